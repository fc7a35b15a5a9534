import Testing
import ESBAMQP
import ESBRedis

@Suite struct CLibraryTests {
    @Test func librabbitmqIsLinked() {
        #expect(AMQPLibrary.version.hasPrefix("0."))
    }

    @Test func hiredisIsLinked() {
        #expect(!RedisLibrary.version.isEmpty)
        #expect(RedisLibrary.version.split(separator: ".").count == 3)
    }
}
