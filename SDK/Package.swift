// swift-tools-version:6.0
// The service SDK lives in its own package so that it builds as ONE shared library,
// libESBService.so. esbd, the tests and every hot-deployed plugin link that one copy;
// a static copy per image would give two `Service` protocols and failing casts.
import PackageDescription

let package = Package(
    name: "ESBServiceSDK",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ESBService", type: .dynamic, targets: ["ESBService"]),
    ],
    targets: [
        .target(name: "ESBService"),
    ]
)
