import Foundation

extension ServerConfig {
    /// The result of reading server.conf: the configuration plus any warnings.
    public struct Loaded: Sendable {
        public var config: ServerConfig
        public var warnings: [ConfigDiagnostic]
    }

    private static let knownKeys: [String: Set<String>] = [
        "main": ["name", "bind", "work_dir", "log_level", "log_format",
                 "graceful_shutdown_seconds", "startup_service_timeout_seconds", "tls_cert_path", "tls_key_path",
                 "max_body_bytes", "idle_timeout_seconds", "trusted_proxies"],
        "crypto": ["secret_key_path"],
        "admin": ["username", "password_file"],
        "odb": ["engine", "path", "host", "port", "database", "username", "password_file", "pool_size", "tls",
                "tls_ca_path", "connect_timeout_seconds"],
        "cluster": ["name", "lease_seconds"],
        "kvdb": ["host", "port", "db", "password", "password_file", "unix_socket_path",
                 "timeout_ms", "pool_size"],
        "hot_deploy": ["pickup_dir", "backup_history", "delete_after_pickup", "swiftc",
                       "extra_module_paths", "compile_timeout_seconds", "max_source_bytes"],
        "async": ["max_concurrency", "retention_days"],
        "startup_services": [],
    ]

    /// Reads and validates server.conf.
    /// - Throws: ``ConfigError`` with every error found (file, line, key, bad value, what is allowed).
    public static func load(path: String) throws(ConfigError) -> Loaded {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let text: String
        do {
            text = try String(contentsOfFile: absolute, encoding: .utf8)
        } catch {
            throw ConfigError(file: absolute, "cannot read the configuration file: \(Self.reason(error))")
        }
        return try parse(text, path: absolute)
    }

    /// Validates INI text as server.conf; `path` names the file and anchors relative paths.
    public static func parse(_ text: String, path: String) throws(ConfigError) -> Loaded {
        let document = try INIDocument(parsing: text, file: path)
        var reader = ConfigReader(file: path, baseDirectory: (path as NSString).deletingLastPathComponent)

        for section in document.sections where knownKeys[section.name] == nil {
            reader.warn(line: section.line, "unknown section [\(section.name)] is ignored")
        }
        for section in document.sections {
            guard let known = knownKeys[section.name], section.name != "startup_services" else { continue }
            for entry in section.entries where !known.contains(entry.key) {
                reader.warn(line: entry.line, "unknown key '\(entry.key)' in [\(section.name)] is ignored; known keys: \(known.sorted().joined(separator: ", "))")
            }
        }

        let mainSection = document.section("main")
        var main = Main(workDir: reader.path(mainSection, "work_dir", default: "./work"))
        main.name = reader.string(mainSection, "name", default: main.name, nonEmpty: true)
        main.bind = reader.bindAddress(mainSection, "bind", default: main.bind)
        main.logLevel = reader.choice(mainSection, "log_level", default: main.logLevel)
        main.logFormat = reader.choice(mainSection, "log_format", default: main.logFormat)
        main.gracefulShutdownSeconds = reader.int(mainSection, "graceful_shutdown_seconds",
                                                  default: main.gracefulShutdownSeconds, in: 0...3600)
        main.startupServiceTimeoutSeconds = reader.int(mainSection, "startup_service_timeout_seconds",
                                                       default: main.startupServiceTimeoutSeconds, in: 1...86_400)
        main.tlsCertPath = reader.optionalPath(mainSection, "tls_cert_path")
        main.tlsKeyPath = reader.optionalPath(mainSection, "tls_key_path")
        if (main.tlsCertPath == nil) != (main.tlsKeyPath == nil) {
            let line = mainSection?.entry(main.tlsCertPath == nil ? "tls_key_path" : "tls_cert_path")?.line
            reader.error(line: line, "[main] tls_cert_path and tls_key_path go together: set both for HTTPS, or neither")
        }
        main.maxBodyBytes = reader.int(mainSection, "max_body_bytes", default: main.maxBodyBytes, in: 1...(1 << 30))
        main.idleTimeoutSeconds = reader.int(mainSection, "idle_timeout_seconds", default: main.idleTimeoutSeconds, in: 1...86_400)
        main.trustedProxies = reader.string(mainSection, "trusted_proxies", default: "")
            .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," }).map(String.init)

        let cryptoSection = document.section("crypto")
        let crypto = Crypto(secretKeyPath: reader.path(cryptoSection, "secret_key_path", default: "./secret.key"))

        let adminSection = document.section("admin")
        var admin = Admin(passwordFile: reader.path(adminSection, "password_file", default: "./admin.password"))
        admin.username = reader.string(adminSection, "username", default: admin.username, nonEmpty: true)

        let odbSection = document.section("odb")
        var odb = ODB(path: reader.path(odbSection, "path", default: "./esb.db"))
        odb.engine = ODB.Engine(rawValue: reader.string(odbSection, "engine", default: odb.engine.rawValue,
                                                        allowed: ODB.Engine.allCases.map(\.rawValue))) ?? .sqlite
        odb.host = reader.string(odbSection, "host", default: odb.host, nonEmpty: true)
        odb.port = reader.int(odbSection, "port", default: odb.port, in: 1...65535)
        odb.database = reader.string(odbSection, "database", default: odb.database, nonEmpty: true)
        odb.username = reader.string(odbSection, "username", default: odb.username, nonEmpty: true)
        odb.passwordFile = reader.optionalPath(odbSection, "password_file")
        odb.poolSize = reader.int(odbSection, "pool_size", default: odb.poolSize, in: 1...1024)
        odb.tls = reader.bool(odbSection, "tls", default: odb.tls)
        odb.tlsCAPath = reader.optionalPath(odbSection, "tls_ca_path")
        odb.connectTimeoutSeconds = reader.int(odbSection, "connect_timeout_seconds", default: odb.connectTimeoutSeconds, in: 1...86_400)
        if odb.tlsCAPath != nil, !odb.tls, let entry = odbSection?.entry("tls_ca_path") {
            reader.error(line: entry.line, "[odb] tls_ca_path is set but tls is false; set tls = true to use it")
        }

        let clusterSection = document.section("cluster")
        var cluster = Cluster()
        cluster.name = reader.string(clusterSection, "name", default: cluster.name, nonEmpty: true)
        cluster.leaseSeconds = reader.int(clusterSection, "lease_seconds", default: cluster.leaseSeconds, in: 5...3600)

        var kvdb: KVDB?
        if let section = document.section("kvdb") {
            var value = KVDB()
            value.host = reader.string(section, "host", default: value.host, nonEmpty: true)
            value.port = reader.int(section, "port", default: value.port, in: 1...65535)
            value.db = reader.int(section, "db", default: value.db, in: 0...1_000_000)
            let password = reader.string(section, "password", default: "")
            value.passwordFile = reader.optionalPath(section, "password_file")
            if !password.isEmpty, let entry = section.entry("password"), value.passwordFile != nil {
                reader.error(line: entry.line, "[kvdb] password and password_file are both set; use one")
            }
            value.password = password.isEmpty ? nil : Secret(password)
            value.unixSocketPath = reader.optionalPath(section, "unix_socket_path")
            value.timeoutMilliseconds = reader.int(section, "timeout_ms", default: value.timeoutMilliseconds, in: 1...600_000)
            value.poolSize = reader.int(section, "pool_size", default: value.poolSize, in: 1...1024)
            kvdb = value
        }

        let hotSection = document.section("hot_deploy")
        var hotDeploy = HotDeploy(pickupDir: reader.path(hotSection, "pickup_dir", default: "./pickup"))
        hotDeploy.backupHistory = reader.int(hotSection, "backup_history", default: hotDeploy.backupHistory, in: 0...100_000)
        hotDeploy.deleteAfterPickup = reader.bool(hotSection, "delete_after_pickup", default: hotDeploy.deleteAfterPickup)
        hotDeploy.swiftc = reader.string(hotSection, "swiftc", default: hotDeploy.swiftc, nonEmpty: true)
        if hotDeploy.swiftc.contains("/") {
            hotDeploy.swiftc = reader.resolve(hotDeploy.swiftc)
        }
        hotDeploy.extraModulePaths = reader.string(hotSection, "extra_module_paths", default: "")
            .split(separator: ":").map { reader.resolve(String($0).trimmingCharacters(in: .whitespaces)) }
        hotDeploy.compileTimeoutSeconds = reader.int(hotSection, "compile_timeout_seconds",
                                                     default: hotDeploy.compileTimeoutSeconds, in: 1...86_400)
        hotDeploy.maxSourceBytes = reader.int(hotSection, "max_source_bytes", default: hotDeploy.maxSourceBytes, in: 1...(256 << 20))

        let asyncSection = document.section("async")
        var async = Async()
        async.maxConcurrency = reader.int(asyncSection, "max_concurrency", default: async.maxConcurrency, in: 1...10_000)
        async.retentionDays = reader.int(asyncSection, "retention_days", default: async.retentionDays, in: 0...36_500)

        var startupServices: [StartupService] = []
        for entry in document.section("startup_services")?.entries ?? [] {
            let payload: StartupService.Payload
            if entry.value.hasPrefix("file://") {
                let target = String(entry.value.dropFirst("file://".count))
                if target.isEmpty {
                    reader.error(line: entry.line, "[startup_services] \(entry.key) = '\(entry.value)': file:// needs a path")
                }
                payload = .file(reader.resolve(target))
            } else {
                payload = .inline(entry.value)
            }
            startupServices.append(StartupService(service: entry.key, payload: payload, line: entry.line))
        }

        if !reader.errors.isEmpty { throw ConfigError(reader.errors + reader.warnings) }
        let config = ServerConfig(path: path, main: main, crypto: crypto, admin: admin, odb: odb, cluster: cluster, kvdb: kvdb,
                                  hotDeploy: hotDeploy, async: async, startupServices: startupServices)
        return Loaded(config: config, warnings: reader.warnings)
    }

    static func reason(_ error: any Error) -> String {
        if let cocoa = error as? CocoaError, let underlying = cocoa.userInfo[NSUnderlyingErrorKey] as? POSIXError {
            return String(cString: strerror(underlying.code.rawValue))
        }
        if let cocoa = error as? CocoaError, cocoa.code == .fileReadNoSuchFile { return String(cString: strerror(ENOENT)) }
        return "\(error.localizedDescription)"
    }
}
