import ESBService
import Foundation

/// Loads a compiled service library and reads its ``ServicePlugin`` manifest.
///
/// Libraries are opened with `RTLD_NODELETE` and never closed: Swift metadata of a
/// plugin may be referenced for the life of the process.
public enum PluginLoader {
    /// Opens `path`, calls its entry point and returns the manifest.
    /// - Throws: ``PluginLoadError`` naming the file and what went wrong.
    public static func load(path: String) throws(PluginLoadError) -> ServicePlugin {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            throw PluginLoadError(path: path, reason: String(cString: dlerror()))
        }
        guard let symbol = dlsym(handle, ServicePlugin.entryPointSymbol) else {
            throw PluginLoadError(path: path, reason: "no entry point '\(ServicePlugin.entryPointSymbol)'; was it built by esbd from a service file?")
        }
        typealias Entry = @convention(c) () -> UnsafeMutableRawPointer
        let entry = unsafeBitCast(symbol, to: Entry.self)
        let object = Unmanaged<AnyObject>.fromOpaque(entry()).takeRetainedValue()
        // Succeeds only when plugin and host share one copy of ESBService.
        guard let plugin = object as? ServicePlugin else {
            throw PluginLoadError(path: path, reason: "its manifest is a \(type(of: object)), not this server's ServicePlugin: the library was built against another copy of ESBService")
        }
        guard plugin.abiVersion == ServicePlugin.currentABIVersion else {
            throw PluginLoadError(path: path, reason: "built for plugin ABI \(plugin.abiVersion); this server speaks \(ServicePlugin.currentABIVersion): rebuild it against this server's SDK (or drop its .swift source instead)")
        }
        return plugin
    }
}

/// A compiled service library could not be loaded.
public struct PluginLoadError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "cannot load '\(path)': \(reason)" }
}
