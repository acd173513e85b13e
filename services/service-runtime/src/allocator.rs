//! The memory allocator of every binary that links this crate: jemalloc, for Rust's
//! allocations and librdkafka's alike.
//!
//! Why: both services allocate and free several small blocks per order on their busiest
//! threads, most of them inside librdkafka (the message, its two contract headers, which are
//! four blocks, and their delivery-report events), and glibc's allocator took about a third of
//! the producer's sending thread (`_int_free`, `_int_malloc`, `malloc_consolidate`, measured
//! with perf). With jemalloc the same run took about 0.65 us less CPU per order, and the
//! tracker caught up 5-8% faster (README, "Performance").
//!
//! How: `tikv-jemallocator` is Rust's global allocator here, and its
//! `unprefixed_malloc_on_supported_platforms` feature makes jemalloc define `malloc`, `free`
//! and the rest, so that the C code linked into the same binary (librdkafka, and glibc's own
//! internal allocations) uses it too, instead of two allocators side by side. On a platform
//! where the feature is not supported, jemalloc keeps prefixed names and serves Rust alone.
//!
//! Because the thinnest loops of the benchmark link this crate too, they run on the same
//! allocator as the services they are compared with: the ratios stay about our own code.
//!
//! jemalloc's options are compiled in: `.cargo/config.toml` sets
//! `JEMALLOC_SYS_WITH_MALLOC_CONF` for every build of the workspace (the images' too), and the
//! test below reads one of them (the arena count) back from jemalloc. An exported variable of
//! that name would win over the file, as cargo's `[env]` allows. The `MALLOC_CONF` environment
//! variable still overrides them at start (jemalloc's own rule), for anyone tuning a
//! deployment. What they are, and why:
//! - `narenas:1`: one arena for all threads. The services have one or two busy threads each
//!   (the intake's tokio workers were not measured apart); jemalloc's default (four arenas per
//!   core) kept each thread's freed memory apart and raised the producer's peak RSS from 28 MB
//!   (glibc) to 37-49 MB, for no throughput measured.
//! - `dirty_decay_ms:250,muzzy_decay_ms:0`: freed pages go back to the system within about a
//!   quarter of a second (10 s by default), so that a burst (a catch-up, librdkafka's request
//!   buffers) does not hold memory after it. Single 2,000,000-order runs of the producer
//!   peaked at 29-31 MB with 1 s and 27-31 MB with 250 ms; the benchmark's five runs at 250 ms
//!   at 30-33 MB, median 31, against 32 MB allowed: little room. Returning pages at once cost
//!   the producer a second of system time per 2,000,000 orders.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(test)]
mod tests {
    /// jemalloc serves this process, with the options `.cargo/config.toml` compiles in: read
    /// back from jemalloc itself, so that a build without them fails here.
    #[test]
    fn jemalloc_runs_with_the_compiled_in_options() {
        assert_eq!(
            tikv_jemalloc_ctl::opt::narenas::read().expect("opt.narenas"),
            1
        );
    }
}
