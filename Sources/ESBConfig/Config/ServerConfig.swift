import Foundation

/// The typed contents of server.conf (INI like Zato's). Every default below is the one
/// used when the key is absent; relative paths are resolved against server.conf's directory.
public struct ServerConfig: Sendable, Equatable {
    /// The absolute path of the file this was read from.
    public var path: String
    public var main: Main
    public var crypto: Crypto
    public var admin: Admin
    public var odb: ODB
    public var cluster: Cluster
    /// `nil` when server.conf has no `[kvdb]` section: kvdb calls then fail with a named error.
    public var kvdb: KVDB?
    public var hotDeploy: HotDeploy
    public var async: Async
    /// `[startup_services]` in file order.
    public var startupServices: [StartupService]

    /// `[main]`.
    public struct Main: Sendable, Equatable {
        /// `name`, default `server1`: shows in logs, metrics and health.
        public var name = "server1"
        /// `bind`, default `127.0.0.1:17010`: channels, admin API, dashboard, metrics.
        public var bind = BindAddress(host: "127.0.0.1", port: 17010)
        /// `work_dir`, default `./work`: compiled services, caches, backups.
        public var workDir: String
        /// `log_level`, default `info`.
        public var logLevel: LogLevel = .info
        /// `log_format`, default `text`.
        public var logFormat: LogFormat = .text
        /// `graceful_shutdown_seconds`, default 10.
        public var gracefulShutdownSeconds = 10
        /// `startup_service_timeout_seconds`, default 60.
        public var startupServiceTimeoutSeconds = 60
        /// `tls_cert_path` (a PEM chain); with ``tlsKeyPath`` the listener speaks HTTPS only.
        public var tlsCertPath: String?
        /// `tls_key_path` (a PEM private key).
        public var tlsKeyPath: String?
        /// `max_body_bytes`, default 1 MiB: the largest body a channel takes (413 beyond).
        public var maxBodyBytes = 1_048_576
        /// `idle_timeout_seconds`, default 30: a request head must arrive, and no silence be
        /// longer, within this.
        public var idleTimeoutSeconds = 30
        /// `trusted_proxies`, default none: peers whose last `X-Forwarded-For` hop is believed.
        public var trustedProxies: [String] = []

        /// Whether the listener speaks HTTPS.
        public var usesTLS: Bool { tlsCertPath != nil && tlsKeyPath != nil }
    }

    /// `[crypto]`.
    public struct Crypto: Sendable, Equatable {
        /// `secret_key_path`, default `./secret.key`: 32 bytes from `esb create-key`.
        public var secretKeyPath: String
    }

    /// `[admin]`.
    public struct Admin: Sendable, Equatable {
        /// `username`, default `admin`.
        public var username = "admin"
        /// `password_file`, default `./admin.password`.
        public var passwordFile: String
    }

    /// `[odb]`.
    public struct ODB: Sendable, Equatable {
        public enum Engine: String, Sendable, Equatable, CaseIterable {
            /// Embedded, one server: a file at `path`.
            case sqlite
            /// A cluster's shared database (`host` … `tls_ca_path`).
            case postgresql
        }

        /// `engine`, default `sqlite`.
        public var engine = Engine.sqlite
        /// `path`, default `./esb.db` (SQLite).
        public var path: String
        /// `host`, default `127.0.0.1` (PostgreSQL, as the keys below).
        public var host = "127.0.0.1"
        /// `port`, default 5432.
        public var port = 5432
        /// `database`, default `esb`.
        public var database = "esb"
        /// `username`, default `esb`.
        public var username = "esb"
        /// `password_file`: the password is the file's first line; none connects without one.
        public var passwordFile: String?
        /// The password read from `password_file` (``ServerConfig/readSecretFiles()``).
        public var password: Secret?
        /// `pool_size`, default 8: the most connections the server opens for its work.
        public var poolSize = 8
        /// `tls`, default false: true requires TLS, verifying the certificate and host name.
        public var tls = false
        /// `tls_ca_path`: the CA bundle to verify against instead of the system's CAs.
        public var tlsCAPath: String?
        /// `connect_timeout_seconds`, default 120: how long a start waits for an unreachable server.
        public var connectTimeoutSeconds = 120
    }

    /// `[cluster]`: servers with one ODB and one cluster name form a cluster.
    public struct Cluster: Sendable, Equatable {
        /// `name`, default `default`.
        public var name = "default"
        /// `lease_seconds`, default 30: how long a silent server's claimed work stays its own.
        public var leaseSeconds = 30
        public init() {}
    }

    /// `[kvdb]`: Redis.
    public struct KVDB: Sendable, Equatable {
        /// `host`, default `127.0.0.1`.
        public var host = "127.0.0.1"
        /// `port`, default 6379.
        public var port = 6379
        /// `db`, default 0.
        public var db = 0
        /// `password`, or the contents of `password_file`; `nil` when neither is set.
        public var password: Secret?
        /// `password_file`, read at start and on reload.
        public var passwordFile: String?
        /// `unix_socket_path`; when set it is used instead of host and port.
        public var unixSocketPath: String?
        /// `timeout_ms`, default 2000.
        public var timeoutMilliseconds = 2000
        /// `pool_size`, default 4.
        public var poolSize = 4
    }

    /// `[hot_deploy]`.
    public struct HotDeploy: Sendable, Equatable {
        /// `pickup_dir`, default `./pickup`.
        public var pickupDir: String
        /// `backup_history`, default 100 versions kept per unit.
        public var backupHistory = 100
        /// `delete_after_pickup`, default false.
        public var deleteAfterPickup = false
        /// `swiftc`, default `swiftc` (looked up on PATH; use an absolute path under systemd).
        public var swiftc = "swiftc"
        /// `extra_module_paths`, default none: directories of prebuilt modules.
        public var extraModulePaths: [String] = []
        /// `compile_timeout_seconds`, default 300: a compile running longer is killed and the unit fails.
        public var compileTimeoutSeconds = 300
        /// `max_source_bytes`, default 1 MiB: larger dropped or uploaded files are refused.
        public var maxSourceBytes = 1_048_576
    }

    /// `[async]`.
    public struct Async: Sendable, Equatable {
        /// `max_concurrency`, default 16.
        public var maxConcurrency = 16
        /// `retention_days`, default 7.
        public var retentionDays = 7
    }

    /// One `[startup_services]` line.
    public struct StartupService: Sendable, Equatable {
        public enum Payload: Sendable, Equatable {
            /// The raw value; empty means an empty payload.
            case inline(String)
            /// `file://PATH`, resolved to an absolute path.
            case file(String)
        }
        public var service: String
        public var payload: Payload
        public var line: Int
    }

    /// A host and port to listen on.
    public struct BindAddress: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// A secret value whose description never shows it.
    public struct Secret: Sendable, Equatable, CustomStringConvertible {
        public var value: String
        public init(_ value: String) { self.value = value }
        public var description: String { "********" }
    }
}

/// `log_level` values, as swift-log's levels.
public enum LogLevel: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// `log_format` values.
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}
