import Dispatch
import Foundation

/// Computes `produce(i)` for 0..<count on worker threads and hands the results to `consume` in
/// order on the calling thread, with at most `window` results in flight (so memory stays bounded
/// by a few items). Results do not depend on scheduling as long as `produce` is pure.
public enum OrderedPipeline {
    public static func run<T>(
        count: Int, workers: Int = 2, window: Int = 4,
        produce: @escaping @Sendable (Int) throws -> T,
        consume: (Int, T) throws -> Void
    ) throws {
        guard count > 0 else { return }
        let slots = (0..<count).map { _ in PipelineSlot<T>() }
        let state = PipelineState()
        // Credits are signalled in rather than given as the initial value: libdispatch traps when
        // a semaphore is released below its initial value, which is the state a `produce` or
        // `consume` error leaves it in (credits taken for items never consumed).
        let credits = DispatchSemaphore(value: 0)
        for _ in 0..<max(window, 1) { credits.signal() }
        let done = DispatchGroup()
        for _ in 0..<max(workers, 1) {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                while true {
                    credits.wait()
                    state.lock.lock()
                    if state.cancelled || state.next >= count {
                        state.lock.unlock()
                        credits.signal()
                        return
                    }
                    let index = state.next
                    state.next += 1
                    state.lock.unlock()
                    slots[index].value = Result { try produce(index) }
                    slots[index].ready.signal()
                }
            }
        }
        defer {
            state.lock.lock()
            state.cancelled = true
            state.lock.unlock()
            for _ in 0..<max(workers, 1) { credits.signal() }
            done.wait()
        }
        for index in 0..<count {
            slots[index].ready.wait()
            let result = slots[index].value!
            slots[index].value = nil
            try consume(index, try result.get())
            credits.signal()
        }
    }
}

/// One result of an `OrderedPipeline`, handed from a worker to the consumer.
private final class PipelineSlot<T>: @unchecked Sendable {
    let ready = DispatchSemaphore(value: 0)
    var value: Result<T, Error>?
}

/// The workers' shared cursor.
private final class PipelineState: @unchecked Sendable {
    let lock = NSLock()
    var next = 0
    var cancelled = false
}
