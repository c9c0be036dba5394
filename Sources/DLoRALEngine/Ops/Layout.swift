extension Ops {
    /// `[B, C, H, W]` → `[B, H·W, C]`: an image as a sequence of pixel tokens
    /// (PyTorch `permute(0, 2, 3, 1).reshape(B, H·W, C)`).
    public static func tokens(fromImage x: Tensor) -> Tensor {
        let (n, c, h, w) = x.nchw("tokens(fromImage:)")
        let plane = h * w
        return Tensor(shape: [n, plane, c]) { dst in
            x.data.withUnsafeBufferPointer { src in
                for b in 0..<n {
                    let s = b * c * plane
                    parallelRanges(plane, work: plane * c) { i0, i1 in
                        for i in i0..<i1 {
                            for ch in 0..<c { dst[s + i * c + ch] = src[s + ch * plane + i] }
                        }
                    }
                }
            }
        }
    }

    /// `[B, H·W, C]` → `[B, C, H, W]`, the inverse of `tokens(fromImage:)`.
    public static func image(fromTokens x: Tensor, height h: Int, width w: Int) -> Tensor {
        precondition(x.rank == 3 && x.shape[1] == h * w, "image(fromTokens:): \(x.shape) for \(h)×\(w)")
        let (n, plane, c) = (x.shape[0], x.shape[1], x.shape[2])
        return Tensor(shape: [n, c, h, w]) { dst in
            x.data.withUnsafeBufferPointer { src in
                for b in 0..<n {
                    let s = b * c * plane
                    parallelRanges(c, work: plane * c) { c0, c1 in
                        for ch in c0..<c1 {
                            for i in 0..<plane { dst[s + ch * plane + i] = src[s + i * c + ch] }
                        }
                    }
                }
            }
        }
    }
}
