import ESBCore
import Foundation
import Hummingbird

/// `/esb/api/*`: the admin API, behind basic auth. Later issues add their routes here.
struct AdminRoutes {

    func register(on api: RouterGroup<ESBRequestContext>) {
        api.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.adminAPI.json)))
        }
    }
}
