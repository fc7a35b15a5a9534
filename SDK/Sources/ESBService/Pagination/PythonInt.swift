import Foundation

/// Python's `int()` on a string, as Django's `validate_number` applies it: surrounding
/// whitespace, one optional sign, decimal digits of any script, single underscores between
/// digits. Values beyond `Int` saturate (they are past any page either way).
enum PythonInt {
    static func parse(_ text: String) -> Int? {
        var characters = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        var negative = false
        if let sign = characters.first, sign == "+" || sign == "-" {
            negative = sign == "-"
            characters = characters.dropFirst()
        }
        var value = 0
        var sawDigit = false
        var previousWasUnderscore = false
        var overflow = false
        for character in characters {
            if character == "_" {
                guard sawDigit, !previousWasUnderscore else { return nil }
                previousWasUnderscore = true
                continue
            }
            guard character.unicodeScalars.count == 1, let scalar = character.unicodeScalars.first,
                  scalar.properties.generalCategory == .decimalNumber, let digit = scalar.properties.numericValue else { return nil }
            sawDigit = true
            previousWasUnderscore = false
            let (times, overflowTimes) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflowSum) = times.addingReportingOverflow(Int(digit))
            if overflowTimes || overflowSum { overflow = true } else { value = sum }
        }
        guard sawDigit, !previousWasUnderscore else { return nil }
        if overflow { return negative ? Int.min : Int.max }
        return negative ? -value : value
    }
}
