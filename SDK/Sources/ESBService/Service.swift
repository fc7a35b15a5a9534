import Foundation

/// A deployable unit of integration logic.
///
/// Drop a file declaring conforming types into the pickup directory and `esbd`
/// compiles, loads and exposes them under ``name``. A fresh instance serves each call.
public protocol Service: Sendable {
    /// The unique name the service is invoked by, e.g. `orders.create`.
    static var name: String { get }
    /// Creates the instance that serves one call.
    init()
    /// Handles one call; a thrown error fails only this call.
    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse
}
