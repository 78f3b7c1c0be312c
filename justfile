# sparksim recipes. Get `just` with `pip install rust-just` (or `cargo install just`).
# Every recipe is a plain cargo command: nothing here is needed to build or test.

# List the recipes.
default:
    @just --list

# Run the built-in quickstart scenario and print a summary.
demo:
    cargo run --release -- demo

# Run every test (the same command CI runs).
test:
    cargo test

# Lint, including the determinism guard in clippy.toml (no HashMap/HashSet, no wall clock).
lint:
    cargo clippy --all-targets -- -D warnings

# Run the benchmarks: quickstart speed against the crypto floor, a coop exit's wall time and a
# long-lived leaf's wall time per transfer (each as a ratio to quickstart), campaign throughput.
bench:
    cargo bench -p sparksim

# Run every library scenario twice with the same seed and compare traces event by event.
check-determinism:
    cargo build --release -p sparksim
    for f in scenarios/*.toml scenarios/regressions/*.toml; do ./target/release/sparksim check-determinism "$f" || exit 1; done

# Run one scenario with one seed, e.g. `just run scenarios/crash-restart.toml 7`.
run SCENARIO SEED="1":
    cargo run --release -- run {{SCENARIO}} --seed {{SEED}}

# Differential tests against the official Spark SDK (needs node + npm; runs `npm ci` if needed):
# prints the table check / cases / identical / first mismatch.
interop:
    cargo test -p reference-node --test interop -- --nocapture --test-threads 1

# Campaign throughput: seed-runs per core-hour on the quickstart scenario, and the speedup
# from --jobs 1 to --jobs 2 (SPARKSIM_BENCH_SEEDS=N to change the seed count, default 8).
bench-campaign:
    cargo bench -p sparksim --bench campaign

# A nightly-style campaign over the whole scenario library, e.g. `just campaign 1..200 2`.
campaign SEEDS="1..20" JOBS="2":
    cargo run --release -- campaign scenarios --seeds {{SEEDS}} --jobs {{JOBS}} --out campaign-out

# Two-phase commit mode: the same fault and hazard scenarios in both consensus modes
# (scenarios/consensus/<name>-gossip.toml vs <name>-two-phase.toml), one campaign to compare them.
consensus-compare SEEDS="1..20" JOBS="2":
    cargo run --release -- campaign scenarios/consensus --seeds {{SEEDS}} --jobs {{JOBS}} --out campaign-consensus
