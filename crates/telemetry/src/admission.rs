//! The serving shell's admission limit as a gauge: `notesuite.admission.limit`, the unary
//! calls a process admits at once right now. It moves with latency (the shell's adaptive
//! limit), so it says what the process currently believes it can serve; beside
//! `rpc.server.active_calls` it shows how close to shedding the process runs.

/// Registers the gauge; `observe` reports the current limit whenever metrics are collected.
pub fn observe_admission_limit(observe: impl Fn() -> usize + Send + Sync + 'static) {
    let meter = opentelemetry::global::meter(crate::SCOPE);
    meter
        .u64_observable_gauge("notesuite.admission.limit")
        .with_unit("{call}")
        .with_description("Unary calls admitted at once before more are shed (adaptive)")
        .with_callback(move |observer| {
            observer.observe(u64::try_from(observe()).unwrap_or(u64::MAX), &[]);
        })
        .build();
}
