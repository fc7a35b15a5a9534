import CESBRabbitMQ

/// Facts about the linked librabbitmq.
public enum AMQPLibrary {
    /// The librabbitmq version string, e.g. `0.11.0`.
    public static var version: String { String(cString: amqp_version()) }
}
