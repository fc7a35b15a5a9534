import ESBCore
import ESBHotDeploy
import ESBService
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOFoundationCompat

/// Admin routes for services: invoke, list, deploy, deployments, startup results.
struct ServiceRoutes {
    /// The configuration in force (body limits).
    let state: ServerState
    let invoker: ServiceInvoker
    let registry: ServiceRegistry
    let deployments: DeploymentStore
    let deployer: Deployer
    let startup: StartupServices

    struct ServiceInfo: Encodable {
        var name: String
        var unit: String
        var kind: Kind

        enum Kind: String, Encodable, CaseIterable { case builtin, deployed }
    }

    func register(on api: RouterGroup<ESBRequestContext>) {
        api.post("invoke/{service}") { request, context in
            let name = try context.parameters.decoded("service")
            let body = try await request.body.collect(upTo: state.config.main.maxBodyBytes)
            let cid = ServiceInvoker.newCID()
            let serviceRequest = ServiceRequest(
                payload: Data(buffer: body), channel: "invoke", cid: cid,
                headers: Self.headers(request), query: Self.query(request))
            return try await Self.respond(cid: cid, detailed: true) {
                try await invoker.invoke(name, request: serviceRequest)
            }
        }
        api.get("services") { _, _ in
            try JSON.response(registry.all().map(Self.info))
        }
        api.get("services/{name}") { _, context in
            let name = try context.parameters.decoded("name")
            guard let entry = registry.lookup(name) else { throw APIError.notFound("no service named '\(name)' is deployed") }
            return try JSON.response(Self.info((name, entry)))
        }
        api.get("deployments") { _, _ in
            try JSON.response(try await deployments.units().map(DeploymentDTO.init))
        }
        api.post("deploy") { request, _ in
            let name = request.uri.queryParameters["name"].map(String.init) ?? ""
            guard !name.isEmpty, !name.contains("/"), PickupWatcher.isDeployable(name) else {
                throw APIError(.unprocessableContent, code: "invalid", "query parameter 'name' must be a file name ending .swift or .so", field: "name")
            }
            let body = try await request.body.collect(upTo: state.config.hotDeploy.maxSourceBytes)
            let outcome = await deployer.deploy(fileName: name, source: Data(buffer: body))
            guard outcome.status == .deployed else {
                throw APIError(.unprocessableContent, code: "deploy.failed", outcome.error ?? "deployment failed")
            }
            return try JSON.response(OutcomeDTO(outcome), status: .created)
        }
        api.get("startup-services") { _, _ in
            try JSON.response(startup.current)
        }
    }

    static func info(_ item: (name: String, entry: ServiceRegistry.Entry)) -> ServiceInfo {
        ServiceInfo(name: item.name, unit: item.entry.unit, kind: item.entry.unit == ServiceRegistry.builtinUnit ? .builtin : .deployed)
    }

    static func headers(_ request: Request) -> [String: String] {
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        return headers
    }

    static func query(_ request: Request) -> [String: String] {
        var query: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
        return query
    }

    /// Runs a service call and turns its response, or error, into HTTP with `X-ESB-CID`.
    /// - Parameter detailed: whether the caller learns the error's text (`/esb/api/invoke`, for
    ///   admins); channel callers get a generic message and the cid, the log has the rest.
    static func respond(cid: String, detailed: Bool, _ call: () async throws -> ServiceResponse) async throws -> Response {
        let response: ServiceResponse
        do {
            response = try await call()
        } catch {
            throw Self.failure(error, cid: cid, detailed: detailed)
        }
        // Outside 100–599, and 1xx, which is no final answer in HTTP/1: the caller gets 500.
        guard (200...599).contains(response.status) else {
            // The invoker logged nothing: the service returned normally.
            throw Self.failure(ServiceError(.internalError, "the service answered status \(response.status), not a final status from 200 to 599"),
                               cid: cid, detailed: detailed, log: true)
        }
        var headers: HTTPFields = [.contentType: response.contentType]
        for (name, value) in response.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        headers[.xESBCID] = cid
        headers[.xContentTypeOptions] = "nosniff"
        // A service's answer shares the dashboard's origin: in a browser it runs sandboxed
        // (no script with the dashboard's cookies) unless the service set a policy of its own.
        if headers[.contentSecurityPolicy] == nil { headers[.contentSecurityPolicy] = "sandbox" }
        return Response(status: .init(code: response.status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: response.payload)))
    }

    /// The API error for a failed call: its status, its code, and its text only when `detailed`.
    static func failure(_ error: any Error, cid: String, detailed: Bool, log: Bool = false) -> APIError {
        let serviceError = error as? ServiceError
        let status = ErrorStatuses.invoke(error)
        let code = serviceError?.code.rawValue ?? "service.error"
        if log {
            ServiceRoutes.logger.error("service response refused", metadata: ["esb.cid": "\(cid)", "esb.error": "\(error)"])
        }
        let message = if detailed {
            status == .internalServerError ? "\(error) (cid \(cid))" : serviceError?.message ?? "\(error)"
        } else {
            status == .internalServerError
                ? "the service failed; the server log has the details under cid \(cid)"
                : "the service is not available; the server log has the details under cid \(cid)"
        }
        var apiError = APIError(status, code: code, message)
        apiError.cid = cid
        apiError.headers[.xESBCID] = cid
        return apiError
    }

    static let logger = Logger(label: "esbd.http")
}

struct DeploymentDTO: Encodable {
    var name: String
    var kind: UnitKind
    var status: UnitStatus
    @ExplicitNull var hash: String? = nil
    @ExplicitNull var version: Int? = nil
    var services: [String]
    @ExplicitNull var error: String? = nil
    /// The libraries the serving version imports.
    var imports: [String]
    /// For a library: the units that import it.
    var dependents: [String]
    var createdAt, updatedAt: Date
    /// How the unit stands on each server of the cluster (§12).
    var servers: [ServerDTO]

    struct ServerDTO: Encodable {
        var name: String
        var status: UnitStatus
        @ExplicitNull var error: String? = nil
        /// The version that server last deployed or tried.
        @ExplicitNull var hash: String? = nil
        /// Whether that is the unit's serving version: false while a server has yet to follow
        /// a deployment (or is down), and with `status` deployed, it still serves the one before.
        var current: Bool
    }

    init(_ unit: DeploymentStore.Unit) {
        name = unit.name; kind = unit.kind; status = unit.status; hash = unit.hash; version = unit.version
        services = unit.services; error = unit.error; imports = unit.imports; dependents = unit.dependents
        createdAt = unit.createdAt; updatedAt = unit.updatedAt
        servers = unit.servers.map {
            ServerDTO(name: $0.name, status: $0.status, error: $0.error, hash: $0.hash, current: $0.hash == unit.hash)
        }
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, status, hash, version, services, error, imports, dependents, servers
        case createdAt = "created_at", updatedAt = "updated_at"
    }
}

struct OutcomeDTO: Encodable {
    var unit: String
    var status: UnitStatus
    var services: [String]
    var cached: Bool
    init(_ outcome: Deployer.Outcome) {
        unit = outcome.unit; status = outcome.status; services = outcome.services; cached = outcome.cached
    }
}
