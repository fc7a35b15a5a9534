// swift-tools-version:6.1
// SwiftESB: an enterprise service bus server in Swift. Layers, bottom up (docs/ARCHITECTURE.md):
// C shims, concurrency primitives -> client wrappers, SDK (in ./SDK), configuration, store ->
// hot deploy -> runtime (ESBCore) -> HTTP face -> executables. Arrows point down only
// (Tests/ESBCoreTests/LayeringTests.swift checks the imports).
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "SwiftESB",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "esbd", targets: ["esbd"]),
        .executable(name: "esb", targets: ["esb"]),
    ],
    dependencies: [
        .package(path: "SDK"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1",
                 traits: ["FullFoundation"]),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // HTTPS on the listener (Hummingbird's TLS support) and in the CLI's --cacert.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // swift-corelibs URLSession never completes a request answered 401 with
        // WWW-Authenticate, so the CLI and the tests use AsyncHTTPClient.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        // enmasse files: YAML (and JSON, a subset) with line numbers for every node.
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        // SwiftParser finds the Service types in a dropped file; no macros, parser only.
        .package(url: "https://github.com/swiftlang/swift-syntax.git", from: "603.0.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // C shims: module maps and static inline wrappers, no logic.
        .systemLibrary(name: "CESBRabbitMQ", pkgConfig: "librabbitmq",
                       providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(name: "CESBHiredis",
                       providers: [.apt(["libhiredis-dev"])]),

        // Concurrency primitives, one of each: the job queue of our own threads, the race
        // against a deadline, per-key serial work, the doorbell. No dependencies.
        .target(name: "ESBConcurrency", swiftSettings: swiftSettings),

        // Client wrappers: safe Swift over one C library each.
        .target(name: "ESBAMQP", dependencies: ["CESBRabbitMQ", "ESBConcurrency"], swiftSettings: swiftSettings),
        .target(name: "ESBRedis", dependencies: ["CESBHiredis", "ESBConcurrency"], swiftSettings: swiftSettings),

        // Configuration: server.conf, secrets at rest, admin credentials, logging. What the
        // `esb` command line needs offline, without the server's heavy dependencies.
        .target(
            name: "ESBConfig",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // The ODB: an engine-neutral store that names no feature; migrations are handed in.
        .target(
            name: "ESBStore",
            dependencies: [
                "ESBConcurrency",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Hot deploy: the live service registry, the deployment registry in the ODB, and the
        // scanner, compiler, loader and pickup watcher that fill them. The only user of swift-syntax.
        .target(
            name: "ESBHotDeploy",
            dependencies: [
                "ESBConcurrency", "ESBStore",
                .product(name: "ESBService", package: "SDK"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftParser", package: "swift-syntax"),
                .product(name: "SwiftSyntax", package: "swift-syntax"),
            ],
            swiftSettings: swiftSettings
        ),

        // The runtime: objects, channels, invocation, durable async, outgoing connections,
        // kvdb, enmasse, server state and health, lifecycle, systemd.
        .target(
            name: "ESBCore",
            dependencies: [
                "ESBConcurrency", "ESBConfig", "ESBStore", "ESBHotDeploy", "ESBAMQP", "ESBRedis",
                .product(name: "ESBService", package: "SDK"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // The HTTP face: routes, DTOs, auth, metrics endpoint.
        .target(
            name: "ESBHTTP",
            dependencies: [
                "ESBConfig", "ESBStore", "ESBHotDeploy", "ESBCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),

        // Executables: thin.
        .executableTarget(
            name: "esbd",
            dependencies: [
                "ESBConfig", "ESBStore", "ESBHotDeploy", "ESBCore", "ESBHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "esb",
            dependencies: [
                // ESBStore and ESBCore for `esb odb copy`, which reads and writes ODBs itself.
                "ESBConfig", "ESBStore", "ESBCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        // Benchmark anchor: the minimal Hummingbird app the HTTP speed targets compare against.
        .executableTarget(
            name: "HummingbirdAnchor",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird")],
            path: "Benchmarks/HummingbirdAnchor"
        ),

        .testTarget(name: "ESBAMQPTests", dependencies: ["ESBAMQP", "CESBRabbitMQ"], swiftSettings: swiftSettings),
        .testTarget(name: "ESBRedisTests", dependencies: ["ESBRedis"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ESBCoreTests",
            dependencies: ["ESBConcurrency", "ESBConfig", "ESBStore", "ESBHotDeploy", "ESBCore", "ESBAMQP", "ESBRedis", .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ESBIntegrationTests",
            dependencies: [
                "ESBConcurrency", "ESBConfig", "ESBStore", "ESBHotDeploy", "ESBCore", "ESBAMQP",
                .product(name: "ESBService", package: "SDK"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
