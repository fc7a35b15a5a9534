import ESBCore
import Foundation
import Hummingbird

/// `/esb/api/*`: the admin API, behind basic auth. Later issues add their routes here.
struct AdminRoutes {
    let state: ServerState

    func register(on api: RouterGroup<ESBRequestContext>) {
        api.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.adminAPI.json)))
        }
        // §12: the servers sharing this ODB (on SQLite, this one).
        api.get("cluster") { _, _ in
            try JSON.response(try await Self.clusterServers(state))
        }
    }

    /// The cluster's servers; a server run without membership (tests) lists itself alone.
    static func clusterServers(_ state: ServerState) async throws -> [ClusterServer] {
        guard let cluster = state.cluster else {
            return [ClusterServer(name: state.name, address: "", version: ClusterMembership.version, startedAt: state.startedAt,
                                  lastSeen: Date(), status: .up)]
        }
        return try await cluster.servers()
    }
}
