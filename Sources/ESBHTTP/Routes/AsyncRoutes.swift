import ESBCore
import Foundation
import Hummingbird

/// `GET /esb/api/async/{cid}`: where an async invocation or invoke/retry stands.
struct AsyncRoutes {
    let store: AsyncStore

    /// The record as the API shows it; times are ISO 8601 UTC.
    struct StatusDTO: Encodable {
        var cid: String
        var kind: String
        /// `pending`, `running`, `done`, `failed`.
        var status: String
        var target: String
        @ExplicitNull var source: String?
        @ExplicitNull var origCID: String?
        var attempts: Int
        var repeats: Int
        @ExplicitNull var nextRunAt: String?
        @ExplicitNull var lastError: String?
        var errors: [String]
        @ExplicitNull var callback: String?
        var callbackID: String
        /// `none`, `pending`, `running`, `delivered`.
        var callbackStatus: String
        var callbackDeliveries: Int
        @ExplicitNull var callbackError: String?
        var interruptions: Int
        var createdAt: String
        var updatedAt: String
        @ExplicitNull var finishedAt: String?

        init(_ record: AsyncRecord) {
            cid = record.cid
            kind = record.kind.rawValue
            status = record.status.rawValue
            target = record.target
            source = record.source
            origCID = record.origCID
            attempts = record.attempts
            repeats = record.repeats
            nextRunAt = record.nextRunAt.map(AsyncRecord.timestamp)
            lastError = record.errors.last
            errors = record.errors
            callback = record.callback
            callbackID = record.callbackID
            callbackStatus = record.callbackStatus.rawValue
            callbackDeliveries = record.callbackDeliveries
            callbackError = record.callbackError
            interruptions = record.interruptions
            createdAt = AsyncRecord.timestamp(record.createdAt)
            updatedAt = AsyncRecord.timestamp(record.updatedAt)
            finishedAt = record.finishedAt.map(AsyncRecord.timestamp)
        }

        enum CodingKeys: String, CodingKey {
            case cid, kind, status, target, source, attempts, repeats, errors, callback, interruptions
            case origCID = "orig_cid", nextRunAt = "next_run_at", lastError = "last_error", callbackID = "callback_id"
            case callbackStatus = "callback_status", callbackDeliveries = "callback_deliveries"
            case callbackError = "callback_error", createdAt = "created_at", updatedAt = "updated_at"
            case finishedAt = "finished_at"
        }
    }

    func register(on api: RouterGroup<ESBRequestContext>) {
        api.get("async/{cid}") { _, context in
            let cid = try context.parameters.decoded("cid")
            guard let record = try await store.record(cid: cid) else {
                throw APIError.notFound("no async invocation with cid '\(cid)' (never accepted, or finished and pruned)")
            }
            return try JSON.response(StatusDTO(record))
        }
    }
}
