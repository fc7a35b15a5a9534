/// What a compiled service library hands to the server when it is loaded.
///
/// Every plugin exports the C symbol ``ServicePlugin/entryPointSymbol``: a function taking
/// no arguments and returning a retained, opaque pointer to a `ServicePlugin`. The server
/// generates that function; authors never write it. Because host and plugins share one
/// copy of this library, the server can cast what it receives back to `ServicePlugin`.
public final class ServicePlugin: Sendable {
    /// The C symbol every plugin exports.
    public static let entryPointSymbol = "esb_plugin_main"
    /// Bumped when the plugin ABI changes; the server refuses other versions.
    /// 2: `ServiceRequest.amqp` (``AMQPDelivery``) and three more ``AMQPHeaderValue`` cases.
    public static let currentABIVersion = 2

    /// The ABI version the plugin was built against.
    public let abiVersion: Int
    /// The service types the plugin declares.
    public let services: [any Service.Type]

    /// Creates the plugin's manifest. The default `abiVersion` is read from the SDK library
    /// loaded at run time, so it always matches: an entry point built for loading elsewhere
    /// passes the number it was built for (esbd's generated entry points write it literally).
    public init(services: [any Service.Type], abiVersion: Int = ServicePlugin.currentABIVersion) {
        self.services = services
        self.abiVersion = abiVersion
    }

    /// Hands the manifest over to the loader as a retained opaque pointer.
    public func retainedPointer() -> UnsafeMutableRawPointer {
        Unmanaged.passRetained(self as AnyObject).toOpaque()
    }
}
