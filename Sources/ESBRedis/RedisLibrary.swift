import CESBHiredis

/// Facts about the linked hiredis.
public enum RedisLibrary {
    /// The hiredis version the wrapper was compiled against, e.g. `0.14.1`.
    public static var version: String {
        "\(cesb_hiredis_major()).\(cesb_hiredis_minor()).\(cesb_hiredis_patch())"
    }
}
