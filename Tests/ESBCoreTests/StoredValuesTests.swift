import ESBStore
import Foundation
import GRDB
import Testing
@testable import ESBCore
@testable import ESBHotDeploy

/// Values read back from the ODB: object defaults from the field table, registry values this
/// server does not know.
@Suite struct StoredValuesTests {
    @Test func aFieldMissingOrNullTakesTheFieldTablesDefault() {
        let channel = ObjectValues(ObjectKinds.httpChannel, ["name": .string("c"), "security": .null])
        #expect(channel.string("security") == "none")
        #expect(channel.string("data_format") == "json")
        #expect(channel.bool("is_active"))
        #expect(channel["max_body_bytes"] == .null)
        let definition = ObjectValues(ObjectKinds.basicAuth, ["realm": .string("Ours")])
        #expect(definition.string("realm") == "Ours")
    }

    @Test func aDeploymentStatusThisServerDoesNotKnowIsANamedError() async throws {
        let path = TestODB.sqlitePath()
        let odb = try ODB(path: path)
        let store = DeploymentStore(odb: odb)
        try await store.recordDeployed(unit: "a.swift", kind: .service, hash: "h", source: Data("x".utf8), services: ["a"], keep: 1)
        try await odb.sqlite.write { db in try db.execute(sql: "UPDATE deployment_unit SET status = 'zombie'") }
        let error = await #expect(throws: StoreError.self) { try await store.units() }
        #expect(error?.message.contains("'a.swift'") == true && error?.message.contains("'zombie'") == true)
    }
}
