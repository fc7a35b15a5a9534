import ESBService
import Foundation

/// GET /sample/quote/{symbol}?currency=EUR: a stock quote from the XML API, priced in any
/// currency with the JSON API's exchange rates. Both upstreams are called concurrently.
struct Quote: Service {
    static let name = "sample.quote"

    struct Rates: Decodable {
        var base: String
        var date: String
        var rates: [String: Double]
    }

    struct Answer: Encodable {
        var symbol: String
        var name: String
        var currency: String
        var price: Double
        var priceUSD: Double
        var rate: Double
        var quotedAt: String
        var ratesDate: String

        enum CodingKeys: String, CodingKey {
            case symbol, name, currency, price, rate
            case priceUSD = "price_usd", quotedAt = "quoted_at", ratesDate = "rates_date"
        }
    }

    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        let symbol = (request.pathParameters["symbol"] ?? "").uppercased()
        let currency = (request.query["currency"] ?? "EUR").uppercased()
        async let quoteCall = context.outgoing.http["sample.quotes"].get(query: ["symbol": symbol])
        async let ratesCall = context.outgoing.http["sample.rates"].get(path: ["base": "USD"])
        do {
            let quote = try await quoteCall.xml()
            let rates = try await ratesCall.decode(Rates.self)
            guard let name = try quote.nodes(forXPath: "/quote/name").first?.stringValue,
                  let priceText = try quote.nodes(forXPath: "/quote/price").first?.stringValue,
                  let priceUSD = Double(priceText) else {
                return try .json(["error": "the quotes API answered without a name or price"]).with(status: 502)
            }
            guard let rate = rates.rates[currency] else {
                return try .json(["error": "no exchange rate for \(currency)"]).with(status: 422)
            }
            let quotedAt = try quote.nodes(forXPath: "/quote/time").first?.stringValue ?? ""
            return try .json(Answer(symbol: symbol, name: name, currency: currency, price: (priceUSD * rate * 100).rounded() / 100,
                                    priceUSD: priceUSD, rate: rate, quotedAt: quotedAt, ratesDate: rates.date))
        } catch let error as ServiceError where error.code == .httpStatus && error.message.contains("answered 404") {
            return try .json(["error": "unknown symbol \(symbol)"]).with(status: 404)
        } catch let error as ServiceError {
            // The error's text names upstream addresses: it goes to the log, the caller gets the cid.
            context.logger.error("sample.quote: \(error)")
            return try .json(["error": "the quotes service is unavailable", "cid": context.cid]).with(status: 502)
        }
    }
}

extension ServiceResponse {
    func with(status: Int) -> ServiceResponse {
        var response = self
        response.status = status
        return response
    }
}
