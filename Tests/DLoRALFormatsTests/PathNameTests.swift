import DLoRALFormats
import Testing

/// Path arithmetic on the paths users type, one-character names included (Foundation's
/// NSString path methods trap on those on Linux).
@Suite("path names")
struct PathNameTests {
    @Test(arguments: [
        ("k", "k", ""), ("é", "é", ""), ("a/k", "k", "a"), ("a/k/", "k", "a"), ("a//k", "k", "a"),
        ("/k", "k", "/"), ("/", "/", "/"), ("", "", ""), ("./k", "k", "."), ("../k", "k", ".."),
        ("/a/bc/d", "d", "/a/bc"),
    ])
    func lastAndParent(path: String, last: String, parent: String) {
        #expect(PathName.last(path) == last, "last of '\(path)'")
        #expect(PathName.parent(path) == parent, "parent of '\(path)'")
    }
}

/// SQNR as `inspect` prints it: 4 decimals, rounded half away from zero, for any finite value a
/// file can hold (a forged 1e15 once trapped converting to Int).
@Suite("SQNR text")
struct SQNRTextTests {
    @Test(arguments: [
        // 12.34375 = 12 + 11/32 is exact in binary, so its 4th decimal is a true tie.
        (40.0, "40.0000"), (12.34375, "12.3438"), (-3.5, "-3.5000"), (0.00004, "0.0000"),
        (1e15, "1000000000000000.0000"), (-2e15, "-2000000000000000.0000"),
    ])
    func formatted(value: Double, text: String) {
        #expect(DLRTTensorEntry.formatDB(value) == text)
    }

    @Test func nonFiniteIsNull() {
        #expect(DLRTTensorEntry.formatDB(.infinity) == "null")
        #expect(DLRTTensorEntry.formatDB(.nan) == "null")
    }
}
