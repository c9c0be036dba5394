import CKernels

/// Process-wide allocator settings for the engine's tensors.
///
/// A step allocates and frees many activations of tens to hundreds of MiB (a 128-channel
/// 512×512 feature map is 128 MiB). glibc serves each allocation above its mmap threshold (at most
/// 32 MiB by default) with a fresh mapping and unmaps it when freed, so the kernel faults in and
/// zeroes every such tensor page by page again: about a tenth of a W8A8 step's time went to page
/// faults. Raising the mmap and trim thresholds keeps freed tensor memory in the heap for the next
/// tensor (measured in BENCHMARKS.md). Elsewhere (not glibc) nothing changes.
enum Allocator {
    /// Applied once per process, on the first model load.
    static let tuned: Bool = dloral_keep_freed_memory() == 1
}
