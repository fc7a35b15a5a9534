import Foundation
import Testing
@testable import ESBConfig
@testable import ESBCore

@Suite struct SecretsTests {
    func temporaryPath(_ name: String) -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("esb-secrets-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent(name).path
    }

    @Test func sealedSecretsOpenWithTheSameKeyOnly() throws {
        let box = try SecretBox(keyBytes: Data(repeating: 7, count: 32))
        let sealed = try box.seal("pa55w,rd")
        #expect(sealed.hasPrefix("v1:"))
        #expect(!sealed.contains("pa55w"))
        #expect(try box.open(sealed) == "pa55w,rd")
        #expect(try box.seal("x") != box.seal("x"), "a fresh nonce each time")
        let other = try SecretBox(keyBytes: Data(repeating: 8, count: 32))
        #expect(throws: SecretError.self) { try other.open(sealed) }
        #expect(throws: SecretError.self) { try box.open("plain") }
    }

    @Test func keysMustBe32Bytes() {
        #expect(throws: SecretError.self) { try SecretBox(keyBytes: Data(count: 16)) }
    }

    @Test func createdKeyFileIs32BytesMode0600AndNeverOverwritten() throws {
        let path = temporaryPath("secret.key")
        try SecretBox.createKeyFile(at: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect((attributes[.size] as? Int) == 32)
        let box = try SecretBox(keyFile: path)
        #expect(try box.open(box.seal("a")) == "a")
        #expect(throws: SecretError.self) { try SecretBox.createKeyFile(at: path) }
    }

    @Test func missingKeyFileErrorSaysHowToCreateIt() {
        do {
            _ = try SecretBox(keyFile: "/nonexistent/secret.key")
            Issue.record("expected an error")
        } catch {
            #expect(error.message.contains("/nonexistent/secret.key"))
            #expect(error.message.contains("esb create-key"))
        }
    }

    @Test func adminCredentialsCompareExactly() {
        let credentials = AdminCredentials(username: "admin", password: "s3cret")
        #expect(credentials.matches(username: "admin", password: "s3cret"))
        #expect(!credentials.matches(username: "admin", password: "s3cre"))
        #expect(!credentials.matches(username: "admin", password: "s3cret!"))
        #expect(!credentials.matches(username: "root", password: "s3cret"))
        #expect(credentials.password.description == "********")
    }

    @Test func healthIsDegradedWhenAnyComponentIsAndUnusableOnlyForCriticalOnes() {
        let ok = HealthReport(server: "s", components: ["odb": .init(status: .ok, critical: true)])
        #expect(ok.status == .ok && !ok.isUnusable)
        let kvdbDown = HealthReport(server: "s", components: [
            "odb": .init(status: .ok, critical: true), "kvdb": .init(status: .degraded, detail: "refused"),
        ])
        #expect(kvdbDown.status == .degraded && !kvdbDown.isUnusable)
        let odbDown = HealthReport(server: "s", components: ["odb": .init(status: .degraded, critical: true)])
        #expect(odbDown.isUnusable)
    }
}
