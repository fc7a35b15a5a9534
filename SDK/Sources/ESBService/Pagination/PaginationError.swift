/// Why a page number was refused, with Django's messages.
public enum PaginationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not an integer ("That page number is not an integer").
    case pageNotAnInteger(message: String)
    /// Below 1 or past the last page ("That page number is less than 1",
    /// "That page contains no results").
    case emptyPage(message: String)

    static let invalidPage = "That page number is not an integer"
    static let minPage = "That page number is less than 1"
    static let noResults = "That page contains no results"

    public var message: String {
        switch self {
        case .pageNotAnInteger(let message), .emptyPage(let message): message
        }
    }

    public var description: String { message }
}
