import ESBService
import Foundation

/// The check a channel's `data_format` makes of a body before its service sees it.
public enum PayloadFormat {
    /// Why `body` is not a `format` body (`json`, `xml`), or nil when it is one (or the
    /// format is `text`). An empty body is no JSON or XML document.
    public static func problem(in body: Data, format: String) -> String? {
        switch format {
        case "json":
            return JSONSyntax.problem(in: body)
        case "xml":
            // The SDK's own check, as a service would see it.
            do {
                _ = try ServiceRequest(payload: body, channel: "", cid: "").xml()
                return nil
            } catch let error as ServiceError {
                return error.message
            } catch {
                return "\(error)"
            }
        default:
            return nil
        }
    }
}
