import Foundation

/// Where the one shared copy of the SDK is: `libESBService.so` and, beside it,
/// `Modules/ESBService.swiftmodule`. The build tree and the installed layout
/// (`PREFIX/lib/esb/`) both look like that.
public struct SDKLocation: Sendable, Equatable {
    /// Directory holding `libESBService.so`.
    public var libraryDirectory: String
    /// Directory holding `ESBService.swiftmodule`.
    public var moduleDirectory: String

    public init(libraryDirectory: String, moduleDirectory: String) {
        self.libraryDirectory = libraryDirectory
        self.moduleDirectory = moduleDirectory
    }

    /// The SDK mapped into this process, found in `/proc/self/maps`.
    /// - Throws: ``PluginLoadError`` when the process does not use a shared ESBService.
    public static func current() throws(PluginLoadError) -> SDKLocation {
        let maps = ProcFile.read("/proc/self/maps")
        for line in maps.split(separator: "\n") {
            guard let slash = line.firstIndex(of: "/") else { continue }
            let path = String(line[slash...])
            guard path.hasSuffix("/libESBService.so") else { continue }
            let directory = (path as NSString).deletingLastPathComponent
            return SDKLocation(libraryDirectory: directory,
                               moduleDirectory: (directory as NSString).appendingPathComponent("Modules"))
        }
        throw PluginLoadError(path: "libESBService.so", reason: "this process has not loaded the shared SDK library")
    }
}
