import CThreadPool

/// The one thread pool of the kernels, the engine and the file readers (`dloral_parallel_for`,
/// CThreadPool): `threads` threads,
/// set by DLORAL_THREADS (default: the online CPUs, at most 8). Results never depend on it: every
/// task's arithmetic is fixed, whichever thread runs it.
public enum ThreadPool {
    /// The pool's thread count.
    public static var threads: Int { Int(dloral_threads()) }

    /// Runs `body(task)` once for every task in `0..<tasks` on the pool (the calling thread
    /// included) and returns when all have run. From inside a task, or while another thread's
    /// tasks run, the tasks run on the calling thread.
    public static func forEach(_ tasks: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var task = body
            withUnsafeMutablePointer(to: &task) { pointer in
                dloral_parallel_for(tasks, { context, index in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
                }, pointer)
            }
        }
    }
}
