import ESBService
import Foundation

/// invoke/retry (INTERFACES.md §6), blocking mode: call the target, retry on a thrown error
/// after the policy's delay, stop at the first success (an empty response is one), and after
/// the last failure throw `retry.exhausted` listing every attempt's error.
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
                errors.append("attempt \(attempt): \(error)")
            }
        }
        throw ServiceError(.retryExhausted, "invoke/retry of '\(request.target)' failed \(errors.count) times: " + errors.joined(separator: "; "))
    }
}
