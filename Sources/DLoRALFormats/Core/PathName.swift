/// Path arithmetic on strings. Foundation's `NSString` path methods trap on one-character
/// relative paths on Linux (`("k" as NSString).deletingLastPathComponent`), and `--output k`
/// is a path a user types.
public enum PathName {
    /// The last component: "b" for "a/b" and "a/b/", "/" for "/", "" for "".
    public static func last(_ path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        if trimmed == "/" { return "/" }
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    /// The folder above the last component: "a" for "a/b", "" for "b", "/" for "/b" and "/".
    public static func parent(_ path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return "" }
        let above = trimmingTrailingSlashes(String(trimmed[..<slash]))
        return above.isEmpty ? "/" : above
    }

    /// "a/b//" → "a/b"; "/" and "//" → "/".
    static func trimmingTrailingSlashes(_ path: String) -> String {
        var out = Substring(path)
        while out.count > 1 && out.hasSuffix("/") { out.removeLast() }
        return String(out)
    }
}
