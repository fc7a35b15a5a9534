import Foundation
import Testing
@testable import ESBConfig
@testable import ESBCore

@Suite struct ServerConfigTests {
    let path = "/etc/esb/server.conf"

    func load(_ text: String) throws -> ServerConfig.Loaded { try ServerConfig.parse(text, path: path) }

    func errors(_ text: String) -> [String] {
        do {
            _ = try load(text)
            return []
        } catch let error as ConfigError {
            return error.diagnostics.filter { $0.severity == .error }.map(\.description)
        } catch {
            return ["unexpected \(error)"]
        }
    }

    @Test func emptyFileGivesTheDocumentedDefaults() throws {
        let config = try load("").config
        #expect(config.main.name == "server1")
        #expect(config.main.bind == .init(host: "127.0.0.1", port: 17010))
        #expect(config.main.workDir == "/etc/esb/work")
        #expect(config.main.logLevel == .info)
        #expect(config.main.logFormat == .text)
        #expect(config.main.gracefulShutdownSeconds == 10)
        #expect(config.main.startupServiceTimeoutSeconds == 60)
        #expect(config.crypto.secretKeyPath == "/etc/esb/secret.key")
        #expect(config.admin.username == "admin")
        #expect(config.admin.passwordFile == "/etc/esb/admin.password")
        #expect(config.odb.engine == .sqlite)
        #expect(config.odb.path == "/etc/esb/esb.db")
        #expect(config.kvdb == nil)
        #expect(config.hotDeploy.pickupDir == "/etc/esb/pickup")
        #expect(config.hotDeploy.backupHistory == 100)
        #expect(config.hotDeploy.deleteAfterPickup == false)
        #expect(config.hotDeploy.swiftc == "swiftc")
        #expect(config.hotDeploy.extraModulePaths == [])
        #expect(config.async.maxConcurrency == 16)
        #expect(config.async.retentionDays == 7)
        #expect(config.startupServices == [])
    }

    @Test func kvdbSectionPresentGivesItsDefaults() throws {
        let kvdb = try #require(try load("[kvdb]\n").config.kvdb)
        #expect(kvdb.host == "127.0.0.1")
        #expect(kvdb.port == 6379)
        #expect(kvdb.db == 0)
        #expect(kvdb.password == nil)
        #expect(kvdb.unixSocketPath == nil)
        #expect(kvdb.timeoutMilliseconds == 2000)
        #expect(kvdb.poolSize == 4)
    }

    @Test func postgresqlODBAndClusterSectionsAreRead() throws {
        var config = try load("""
            [odb]
            engine = postgresql
            host = db.example
            port = 6543
            database = esbprod
            username = esbuser
            password_file = ./odb.password
            pool_size = 16
            tls = true
            tls_ca_path = ./ca.pem
            connect_timeout_seconds = 30
            [cluster]
            name = prod
            lease_seconds = 45
            """).config
        #expect(config.odb.engine == .postgresql)
        #expect((config.odb.host, config.odb.port, config.odb.database, config.odb.username) == ("db.example", 6543, "esbprod", "esbuser"))
        #expect(config.odb.passwordFile == "/etc/esb/odb.password")
        #expect((config.odb.poolSize, config.odb.tls, config.odb.tlsCAPath, config.odb.connectTimeoutSeconds) == (16, true, "/etc/esb/ca.pem", 30))
        #expect((config.cluster.name, config.cluster.leaseSeconds) == ("prod", 45))
        let defaults = try load("[odb]\nengine = postgresql\n").config
        #expect((defaults.odb.host, defaults.odb.port, defaults.odb.database, defaults.odb.username) == ("127.0.0.1", 5432, "esb", "esb"))
        #expect((defaults.odb.poolSize, defaults.odb.tls, defaults.odb.connectTimeoutSeconds) == (8, false, 120))
        #expect((defaults.cluster.name, defaults.cluster.leaseSeconds) == ("default", 30))
        // The password is read from its file (the first line) only for PostgreSQL.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("esb-odbpw-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try "s3cret\n".write(toFile: directory + "/odb.password", atomically: true, encoding: .utf8)
        config.odb.passwordFile = directory + "/odb.password"
        try config.readSecretFiles()
        #expect(config.odb.password?.value == "s3cret")
        #expect("\(config.odb.password!)" == "********")
    }

    @Test func valuesAreReadAndPathsResolvedAgainstTheConfigDirectory() throws {
        let config = try load("""
            [main]
            name = edge-1
            bind = [::1]:8080
            work_dir = ../var/work
            log_level = DEBUG
            log_format = json
            [odb]
            path = /var/lib/esb/esb.db
            [kvdb]
            password = p,w;d
            unix_socket_path = ./redis.sock
            [hot_deploy]
            delete_after_pickup = yes
            swiftc = /opt/swift/usr/bin/swiftc
            extra_module_paths = mods:/opt/mods
            """).config
        #expect(config.main.name == "edge-1")
        #expect(config.main.bind == .init(host: "::1", port: 8080))
        #expect(config.main.bind.description == "[::1]:8080")
        #expect(config.main.workDir == "/etc/var/work")
        #expect(config.main.logLevel == .debug)
        #expect(config.main.logFormat == .json)
        #expect(config.odb.path == "/var/lib/esb/esb.db")
        #expect(config.kvdb?.password?.value == "p,w;d")
        #expect(config.kvdb?.password?.description == "********")
        #expect(config.kvdb?.unixSocketPath == "/etc/esb/redis.sock")
        #expect(config.hotDeploy.deleteAfterPickup)
        #expect(config.hotDeploy.swiftc == "/opt/swift/usr/bin/swiftc")
        #expect(config.hotDeploy.extraModulePaths == ["/etc/esb/mods", "/opt/mods"])
    }

    @Test func startupServicesKeepFileOrderAndResolveFilePayloads() throws {
        let config = try load("""
            [startup_services]
            esb.helpers.input-logger = Hello, from the startup stanza
            my.warm-cache = file://payloads/warm-cache.json
            my.abs = file:///srv/p.json
            my.empty =
            my.json = {"a": 1, "b": 2}
            """).config
        #expect(config.startupServices.map(\.service) == ["esb.helpers.input-logger", "my.warm-cache", "my.abs", "my.empty", "my.json"])
        #expect(config.startupServices.map(\.payload) == [
            .inline("Hello, from the startup stanza"),
            .file("/etc/esb/payloads/warm-cache.json"),
            .file("/srv/p.json"),
            .inline(""),
            .inline(#"{"a": 1, "b": 2}"#),
        ])
        #expect(config.startupServices[1].line == 3)
    }

    @Test func badValuesNameFileLineKeyValueAndWhatIsAllowed() {
        #expect(errors("[main]\nlog_level = verbose\n") == [
            "/etc/esb/server.conf:2: error: [main] log_level = 'verbose' is not valid; allowed: trace|debug|info|notice|warning|error|critical",
        ])
        #expect(errors("[main]\nbind = localhost\n") == [
            "/etc/esb/server.conf:2: error: [main] bind = 'localhost' is not valid; allowed: HOST:PORT or [IPv6]:PORT",
        ])
        #expect(errors("[main]\nbind = 127.0.0.1:99999\n") == [
            "/etc/esb/server.conf:2: error: [main] bind = '127.0.0.1:99999' is not valid; allowed: HOST:PORT with a port from 0 to 65535",
        ])
        #expect(errors("\n[main]\ngraceful_shutdown_seconds = ten\n") == [
            "/etc/esb/server.conf:3: error: [main] graceful_shutdown_seconds = 'ten' is not valid; allowed: a whole number from 0 to 3600",
        ])
        #expect(errors("[odb]\nengine = mysql\n") == [
            "/etc/esb/server.conf:2: error: [odb] engine = 'mysql' is not valid; allowed: sqlite|postgresql",
        ])
        #expect(errors("[odb]\nengine = postgresql\ntls_ca_path = /etc/ca.pem\n") == [
            "/etc/esb/server.conf:3: error: [odb] tls_ca_path is set but tls is false; set tls = true to use it",
        ])
        #expect(errors("[cluster]\nlease_seconds = 1\n") == [
            "/etc/esb/server.conf:2: error: [cluster] lease_seconds = '1' is not valid; allowed: a whole number from 5 to 3600",
        ])
        #expect(errors("[hot_deploy]\ndelete_after_pickup = maybe\n") == [
            "/etc/esb/server.conf:2: error: [hot_deploy] delete_after_pickup = 'maybe' is not valid; allowed: true|false (also yes|no, on|off, 1|0)",
        ])
        #expect(errors("[kvdb]\npool_size = 0\n") == [
            "/etc/esb/server.conf:2: error: [kvdb] pool_size = '0' is not valid; allowed: a whole number from 1 to 1024",
        ])
        #expect(errors("[kvdb]\npassword = x\npassword_file = ./p\n") == [
            "/etc/esb/server.conf:2: error: [kvdb] password and password_file are both set; use one",
        ])
        #expect(errors("[main]\nname =\n") == [
            "/etc/esb/server.conf:2: error: [main] name = '' is not valid; allowed: a non-empty value",
        ])
        #expect(errors("[startup_services]\nsvc = file://\n") == [
            "/etc/esb/server.conf:2: error: [startup_services] svc = 'file://': file:// needs a path",
        ])
    }

    @Test func everyBadValueIsReported() {
        #expect(errors("[main]\nlog_level = x\nlog_format = y\n[async]\nmax_concurrency = 0\n").count == 3)
    }

    @Test func unknownSectionsAndKeysAreWarningsWithTheirLine() throws {
        let loaded = try load("[main]\nnmae = x\n[extra]\na = 1\n")
        #expect(loaded.warnings.map(\.description) == [
            "/etc/esb/server.conf:3: warning: unknown section [extra] is ignored",
            "/etc/esb/server.conf:2: warning: unknown key 'nmae' in [main] is ignored; known keys: bind, graceful_shutdown_seconds, idle_timeout_seconds, log_format, log_level, max_body_bytes, name, startup_service_timeout_seconds, tls_cert_path, tls_key_path, trusted_proxies, work_dir",
        ])
    }

    @Test func missingFileIsAnErrorNamingIt() {
        #expect(throws: ConfigError.self) { try ServerConfig.load(path: "/nonexistent/server.conf") }
        do {
            _ = try ServerConfig.load(path: "/nonexistent/server.conf")
        } catch {
            #expect(error.description == "/nonexistent/server.conf: error: cannot read the configuration file: No such file or directory")
        }
    }

    @Test func theShippedExampleIsValidWithoutWarnings() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("server.conf.example").path
        let loaded = try ServerConfig.load(path: example)
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.config.kvdb != nil)
        #expect(!loaded.config.startupServices.isEmpty)
    }

    @Test func changesThatNeedARestartAreNamed() throws {
        let old = try load("[main]\nbind = 127.0.0.1:1\n").config
        let new = try load("[main]\nbind = 127.0.0.1:2\nlog_level = debug\n[odb]\npath = other.db\n").config
        #expect(ServerState.changesNeedingRestart(from: old, to: new) == [
            "[main] bind changed from 127.0.0.1:1 to 127.0.0.1:2", "[odb] changed",
        ])
    }
}
