import ESBService
import Foundation

/// invoke/retry, Zato's pattern. Blocking: call the target, retry on a thrown error after
/// the policy's delay, stop at the first success (an empty response is one), and after the
/// last failure throw `retry.exhausted` listing every attempt's error. In the background
/// (`asyncFallback` after a failed first try, or `invokeAsync`): a durable record that the
/// ``AsyncScheduler`` retries, then calls back.
struct InvokeRetryRunner: Sendable {
    let invoker: ServiceInvoker

    func blocking(_ request: InvokeRetryRequest, caller: String) async throws -> ServiceResponse {
        let policy = RetryPolicy(request)
        var errors: [String] = []
        for attempt in 1...(policy.repeats + 1) {
            if attempt > 1 { try await Task.sleep(for: policy.delay(beforeRetry: attempt - 1)) }
            do {
                return try await invoker.invoke(request.target, request: ServiceRequest(
                    payload: request.payload, channel: "invoke", cid: ServiceInvoker.newCID()), caller: caller)
            } catch let error as ServiceError where error.code == .invokeUnknownService || error.code == .invokeSelfInvocation {
                throw error  // retrying cannot help
            } catch {
                errors.append("\(error)")
            }
        }
        throw Self.exhausted(target: request.target, errors: errors)
    }

    /// Tries once; on failure stores the retries durably and returns their cid.
    func fallback(_ request: InvokeRetryRequest, context: ServiceContext) async throws -> InvokeRetryResult {
        if let callback = request.callback { try invoker.checkInvocable(callback, role: "callback service") }
        let failure: any Error
        do {
            return .response(try await invoker.invoke(request.target, request: ServiceRequest(
                payload: request.payload, channel: "invoke", cid: ServiceInvoker.newCID()), caller: context.serviceName))
        } catch let error as ServiceError where error.code == .invokeUnknownService || error.code == .invokeSelfInvocation {
            throw error
        } catch {
            failure = error
        }
        var record = Self.record(request, context: context)
        record.recordAttempt(.failure(AttemptError(failure)), now: record.createdAt)
        try await invoker.accept(record)
        return .pending(cid: record.cid)
    }

    /// Stores every attempt durably for the background and returns the cid.
    func background(_ request: InvokeRetryRequest, context: ServiceContext) async throws -> String {
        let record = Self.record(request, context: context)
        try await invoker.accept(record)
        return record.cid
    }

    private static func record(_ request: InvokeRetryRequest, context: ServiceContext) -> AsyncRecord {
        AsyncRecord(kind: .invokeRetry, target: request.target, payload: request.payload, source: context.serviceName,
                    origCID: context.cid, callback: request.callback, context: request.context, repeats: request.repeats,
                    interval: request.interval, backoff: request.backoff, maxInterval: request.maxInterval,
                    now: AsyncRecord.now())
    }

    /// The error after the last failed attempt, listing `errors` (one per attempt, in order).
    static func exhausted(target: String, errors: [String]) -> ServiceError {
        let lines = errors.enumerated().map { "attempt \($0.offset + 1): \($0.element)" }
        return ServiceError(.retryExhausted, "invoke/retry of '\(target)' failed \(errors.count) times: " + lines.joined(separator: "; "))
    }
}
