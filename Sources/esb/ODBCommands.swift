import ArgumentParser
import ESBConfig
import ESBCore
import ESBStore
import Foundation
import Logging

struct ODBCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "odb", abstract: "Work with a server's ODB offline.",
        subcommands: [Copy.self])

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy objects, the deployment registry and pending async work into an empty ODB.",
            discussion: """
                Reads the ODB and [crypto] key of the --from server.conf and writes into the ODB of the \
                --to server.conf, which must be empty; secrets are sealed again with the --to key. No \
                server may run on either ODB while it copies, nor start on the target until the copy has \
                finished. Afterwards start servers on the target only: the source, which still holds the \
                same pending work, is marked copied and esbd refuses to start on it.
                """)

        @Option(name: .customLong("from"), help: "server.conf of the server whose ODB is copied.")
        var from: String

        @Option(name: .customLong("to"), help: "server.conf naming the empty ODB to copy into.")
        var to: String

        func run() async throws {
            let (sourceConfig, sourceSecrets) = try Self.load(from, role: "--from")
            let (targetConfig, targetSecrets) = try Self.load(to, role: "--to")
            if ODB.location(sourceConfig.odb).description == ODB.location(targetConfig.odb).description {
                throw CLIError("esb: --from and --to name the same ODB (\(ODB.location(sourceConfig.odb)))")
            }
            if sourceConfig.odb.engine == .sqlite, !FileManager.default.fileExists(atPath: sourceConfig.odb.path) {
                throw CLIError("esb: \(from): [odb] path '\(sourceConfig.odb.path)' does not exist: nothing to copy")
            }
            let source = try await Self.open(sourceConfig, role: "--from", path: from)
            let target: ODB
            do {
                target = try await Self.open(targetConfig, role: "--to", path: to)
            } catch {
                await source.close()
                throw error
            }
            let result: Result<ODBCopy.Report, ODBCopyError>
            do {
                let lease = max(60, sourceConfig.cluster.leaseSeconds, targetConfig.cluster.leaseSeconds)
                result = .success(try await ODBCopy.run(from: source, sourceSecrets: sourceSecrets, to: target,
                                                        targetSecrets: targetSecrets, recentlySeen: .seconds(lease)) { line in print(line) })
            } catch {
                result = .failure(error)
            }
            await source.close()
            await target.close()
            let report: ODBCopy.Report
            switch result {
            case .success(let copied): report = copied
            case .failure(let error): throw CLIError("esb: odb copy: \(error)")
            }
            for skipped in report.skippedUnits {
                print("not copied: unit '\(skipped.name)': \(skipped.reason)")
            }
            if report.waitingForSkippedUnits > 0 {
                print("\(report.waitingForSkippedUnits) pending async invocation(s) call a service of a unit not copied: "
                    + "they wait on the target until a server deploys it")
            }
            if report.finishedNotCopied > 0 {
                print("not copied: \(report.finishedNotCopied) finished async invocation(s) (history; they stay in the source)")
            }
            if report.interrupted > 0 {
                print("\(report.interrupted) step(s) the source server was running when it stopped run again on the target")
            }
            print("""
                copied \(ODB.location(sourceConfig.odb)) into \(ODB.location(targetConfig.odb)). \
                Start servers on the target: the source is marked copied, and esbd refuses to start on it.
                """)
        }

        static func load(_ path: String, role: String) throws -> (ServerConfig, SecretBox) {
            do {
                var config = try ServerConfig.load(path: path).config
                try config.readSecretFiles()
                return (config, try SecretBox(keyFile: config.crypto.secretKeyPath))
            } catch let error as ConfigError {
                throw CLIError("esb: \(role) \(path): configuration error\n\(error)")
            } catch {
                throw CLIError("esb: \(role) \(path): [crypto] secret_key_path: \(error)")
            }
        }

        static func open(_ config: ServerConfig, role: String, path: String) async throws -> ODB {
            var logger = Logger(label: "esb")
            logger.logLevel = .critical
            do {
                // Migrated only once held: a server still running on it must not see its schema change.
                return try await ODB.open(config: config.odb, logger: logger, migrate: false) { number, error in
                    FileHandle.standardError.write(Data("esb: \(role) ODB not reachable (attempt \(number)), retrying: \(error)\n".utf8))
                }
            } catch {
                throw CLIError("esb: \(role) \(path): \(error)")
            }
        }
    }
}
