/// IEEE binary16 → binary32, bit for bit as the hardware converts (x86 `vcvtph2ps`, arm64
/// `FCVT`) and as the kernels' scalar reference does: every finite half is exact in a float,
/// infinities keep their sign, and a NaN keeps its payload with the quiet bit set.
///
/// Written out on the bits rather than through `Float(Float16)`: that goes through a library
/// call per element on x86 without F16C, and leaves a signaling NaN signaling.
public enum HalfConversion {
    @inline(__always)
    public static func floatBits(fromHalf h: UInt16) -> UInt32 {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0 {
            // Zero or subnormal: mantissa · 2^-24, exact in a float.
            return sign | (Float(mantissa) * 0x1p-24).bitPattern
        }
        if exponent == 31 {
            return sign | 0x7F80_0000 | (mantissa << 13) | (mantissa != 0 ? 0x40_0000 : 0)
        }
        return sign | ((exponent + 112) << 23) | (mantissa << 13)
    }

    @inline(__always)
    public static func float(fromHalf h: UInt16) -> Float { Float(bitPattern: floatBits(fromHalf: h)) }

    /// Converts `count` halves at `source` into `destination`.
    public static func convert(_ count: Int, from source: UnsafePointer<UInt16>, to destination: UnsafeMutablePointer<Float>) {
        for i in 0..<count { destination[i] = float(fromHalf: source[i]) }
    }
}
