extension Ops {
    /// `[B, C, H, W]` → `[B, H·W, C]`: an image as a sequence of pixel tokens
    /// (PyTorch `permute(0, 2, 3, 1).reshape(B, H·W, C)`).
    public static func tokens(fromImage x: Tensor) -> Tensor {
        let (n, c, h, w) = x.nchw("tokens(fromImage:)")
        let plane = h * w
        var out = Tensor(zeros: [n, plane, c])
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for b in 0..<n {
                    let s = b * c * plane
                    for ch in 0..<c {
                        for i in 0..<plane { dst[s + i * c + ch] = src[s + ch * plane + i] }
                    }
                }
            }
        }
        return out
    }

    /// `[B, H·W, C]` → `[B, C, H, W]`, the inverse of `tokens(fromImage:)`.
    public static func image(fromTokens x: Tensor, height h: Int, width w: Int) -> Tensor {
        precondition(x.rank == 3 && x.shape[1] == h * w, "image(fromTokens:): \(x.shape) for \(h)×\(w)")
        let (n, plane, c) = (x.shape[0], x.shape[1], x.shape[2])
        var out = Tensor(zeros: [n, c, h, w])
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for b in 0..<n {
                    let s = b * c * plane
                    for i in 0..<plane {
                        for ch in 0..<c { dst[s + ch * plane + i] = src[s + i * c + ch] }
                    }
                }
            }
        }
        return out
    }
}
