import ESBCore
import Foundation
import Hummingbird

/// `/esb/api/scheduler`: jobs (`scheduler` objects) with their next run time and last run,
/// their run history, and "run now".
struct SchedulerRoutes {
    let store: ObjectStore
    let scheduler: Scheduler
    static let path = "scheduler"

    struct Executed: Encodable {
        var cid: String
        var job: String
    }

    func register(on api: RouterGroup<ESBRequestContext>) {
        let kind = ObjectKinds.scheduler
        api.get(RouterPath(Self.path)) { _, _ in
            try JSON.response(try await scheduler.list())
        }
        api.post(RouterPath(Self.path)) { request, _ in
            let created = try await store.create(kind, try await ObjectRoutes.body(request, kind: kind))
            return try JSON.response(try await scheduler.job(created["name"]?.string ?? ""), status: .created)
        }
        api.get(RouterPath("\(Self.path)/{name}")) { _, context in
            try JSON.response(try await scheduler.job(try context.parameters.decoded("name")))
        }
        api.put(RouterPath("\(Self.path)/{name}")) { request, context in
            let name = try context.parameters.decoded("name")
            _ = try await store.update(kind, name, try await ObjectRoutes.body(request, kind: kind))
            return try JSON.response(try await scheduler.job(name))
        }
        api.delete(RouterPath("\(Self.path)/{name}")) { _, context in
            try await store.delete(kind, try context.parameters.decoded("name"))
            return Response(status: .noContent)
        }
        api.get(RouterPath("\(Self.path)/{name}/runs")) { _, context in
            try JSON.response(try await scheduler.runs(try context.parameters.decoded("name")))
        }
        api.post(RouterPath("\(Self.path)/{name}/execute")) { _, context in
            let name = try context.parameters.decoded("name")
            return try JSON.response(Executed(cid: try await scheduler.execute(name), job: name), status: .accepted)
        }
    }
}
