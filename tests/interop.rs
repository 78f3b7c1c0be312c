//! Differential tests against the official Spark SDK (`@buildonspark/spark-sdk` 0.8.8, pinned in
//! `tests/interop/package-lock.json`): the same seeded random inputs go to the SDK (through
//! `tests/interop/driver.mjs`) and to the reference node, and the results are compared byte for
//! byte. `just interop` prints the table (check, cases, identical, first mismatch).
//!
//! Needs `node` and `npm` on PATH: without them the test fails with a clear message (it never
//! passes silently). `npm ci` runs here when `tests/interop/node_modules` is missing.
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use frost_secp256k1_tr as frost;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use reference_node::crypto::signing::{self, KeyShare, SigningJob};
use reference_node::crypto::{ecies, secp, vss, PublicKey, Scalar, SecretKey};
use reference_node::tx::address::{self, SparkNetwork};
use reference_node::tx::template::{self, RefundTxs};
use reference_node::tx::{connector, htlc, sighash, timelock};
use reference_node::types::OperatorId;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Cases per randomised check (the issue asks for at least 200).
const CASES: usize = 200;
/// Fixed seed of every draw in this file: a failure replays exactly.
const SEED: u64 = 0x5350_4152_4b49_4f50;

// ---------------------------------------------------------------------------------------------
// The oracle: node + the SDK.

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

/// Makes sure node runs and the pinned SDK is installed (`npm ci` once, under a lock: the tests
/// of this file run in parallel threads).
fn ensure_sdk() {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return;
    }
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "interop: `node` is not on PATH. The differential tests run the official Spark SDK \
             under Node.js (>= 18): install Node.js and npm, then rerun `cargo test`."
        ),
    }
    let dir = interop_dir();
    if !dir
        .join("node_modules/@buildonspark/spark-sdk/package.json")
        .exists()
    {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "interop: could not run `npm ci` in {}: {e} (is npm installed?)",
                    dir.display()
                )
            });
        assert!(
            out.status.success(),
            "interop: `npm ci` failed in {}:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    *ready = true;
}

/// Runs one check of the driver on `cases`; one result per case, in order.
fn oracle(check: &str, cases: &[Value]) -> Vec<Value> {
    ensure_sdk();
    let mut child = Command::new("node")
        .arg("driver.mjs")
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("interop: spawn node driver.mjs");
    let request = json!({ "check": check, "cases": cases }).to_string();
    let mut stdin = child.stdin.take().expect("driver stdin");
    // Write from a thread: the driver may start answering before it has read everything.
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let out = child
        .wait_with_output()
        .expect("interop: wait for node driver.mjs");
    writer
        .join()
        .expect("writer thread")
        .expect("interop: write the cases to driver.mjs");
    assert!(
        out.status.success(),
        "interop: driver.mjs failed on check {check}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("interop: driver.mjs printed invalid JSON");
    assert_eq!(results.len(), cases.len(), "interop: one result per case");
    results
}

// ---------------------------------------------------------------------------------------------
// The table.

#[derive(Default)]
struct Row {
    cases: usize,
    identical: usize,
    first_mismatch: Option<String>,
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, Row)>,
}

impl Table {
    fn row(&mut self, check: &str) -> &mut Row {
        if let Some(i) = self.rows.iter().position(|(c, _)| c == check) {
            return &mut self.rows[i].1;
        }
        self.rows.push((check.to_owned(), Row::default()));
        &mut self.rows.last_mut().expect("just pushed").1
    }

    /// One case of `check`: identical iff `ours == sdk` (JSON values, bytes as hex).
    fn compare(&mut self, check: &str, case: usize, sdk: &Value, ours: &Value) {
        let row = self.row(check);
        row.cases += 1;
        if sdk == ours {
            row.identical += 1;
        } else if row.first_mismatch.is_none() {
            row.first_mismatch = Some(format!("case {case}: {}", first_difference("", sdk, ours)));
        }
    }

    /// One case of `check` that is a yes/no property (e.g. "the SDK accepts our share").
    fn expect(&mut self, check: &str, case: usize, ok: bool, detail: impl FnOnce() -> String) {
        let row = self.row(check);
        row.cases += 1;
        if ok {
            row.identical += 1;
        } else if row.first_mismatch.is_none() {
            row.first_mismatch = Some(format!("case {case}: {}", detail()));
        }
    }

    fn mismatches(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|(_, r)| r.identical != r.cases)
            .map(|(c, _)| c.as_str())
            .collect()
    }

    fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|(c, _)| c.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!(
            "| {:width$} | cases | identical | first mismatch |\n",
            "check"
        );
        s += &format!(
            "|{}|------:|----------:|----------------|\n",
            "-".repeat(width + 2)
        );
        for (check, r) in &self.rows {
            s += &format!(
                "| {check:width$} | {:5} | {:9} | {} |\n",
                r.cases,
                r.identical,
                r.first_mismatch.as_deref().unwrap_or("-")
            );
        }
        s
    }
}

/// Where two JSON values first differ: the field path and, for hex strings, the byte offset.
fn first_difference(path: &str, sdk: &Value, ours: &Value) -> String {
    if path.is_empty() {
        return first_difference("value", sdk, ours);
    }
    match (sdk, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let w = b.get(k).unwrap_or(&Value::Null);
                if v != w {
                    return first_difference(&format!("{path}.{k}"), v, w);
                }
            }
            for (k, w) in b {
                if !a.contains_key(k) {
                    return first_difference(&format!("{path}.{k}"), &Value::Null, w);
                }
            }
            format!("{path}: equal")
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find(|(_, (v, w))| v != w)
            .map(|(i, (v, w))| first_difference(&format!("{path}[{i}]"), v, w))
            .unwrap_or_else(|| format!("{path}: equal")),
        (Value::String(a), Value::String(b)) => {
            let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            let cut = |s: &str| s.get(at..(at + 16).min(s.len())).unwrap_or("").to_owned();
            format!(
                "{path}: differ at byte {} (sdk …{}…, ours …{}…)",
                at / 2,
                cut(a),
                cut(b)
            )
        }
        _ => format!("{path}: sdk {sdk}, ours {ours}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Seeded draws.

fn rng(check: &str) -> ChaCha20Rng {
    // One stream per check, so adding a check never shifts another's cases.
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&SEED.to_le_bytes());
    for (i, b) in check.bytes().enumerate() {
        seed[8 + i % 24] ^= b;
    }
    ChaCha20Rng::from_seed(seed)
}

fn below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

fn bytes32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

fn secret_key(rng: &mut ChaCha20Rng) -> SecretKey {
    Scalar::random(rng)
        .to_secret_key()
        .expect("Scalar::random is non-zero")
}

fn public_key(rng: &mut ChaCha20Rng) -> PublicKey {
    PublicKey::from_secret_key(secp(), &secret_key(rng))
}

/// A sequence as wallets and operators meet them: upper bits 0, bit 30 or arbitrary; low 16 bits
/// mostly in the protocol's range (0..=2100, with the multiples of 100 and their neighbours) and
/// sometimes anywhere.
fn sequence(rng: &mut ChaCha20Rng) -> u32 {
    let upper = match below(rng, 4) {
        0 | 1 => 0,
        2 => 1 << 30,
        _ => (rng.next_u32() & 0xffff_0000) & !(1 << 31),
    };
    let low = match below(rng, 4) {
        0 => below(rng, 22) as u32 * 100,
        1 => (below(rng, 22) as u32 * 100).saturating_sub(1) + below(rng, 3) as u32,
        2 => below(rng, 2101) as u32,
        _ => rng.next_u32() & 0xffff,
    };
    upper | low
}

fn amount(rng: &mut ChaCha20Rng) -> Amount {
    // Around the 955-sat direct fee, small leaves, and anything up to 21M BTC. Never 0: the SDK
    // refuses a parent output without an amount (`!parentOutput.amount`), and so would a leaf.
    Amount::from_sat(match below(rng, 3) {
        0 => 1 + below(rng, 2000),
        1 => 1 + below(rng, 10_000_000),
        _ => 1 + below(rng, Amount::MAX_MONEY.to_sat()),
    })
}

fn hex_tx(tx: &Transaction) -> Value {
    Value::String(serialize_hex(tx))
}

// ---------------------------------------------------------------------------------------------
// Check 1: transactions.

struct TxCase {
    parent: Transaction,
    vout: u32,
    receiver: PublicKey,
    node_seq: u32,
    refund_seq: u32,
    connector: OutPoint,
    connector_out: TxOut,
    hash: [u8; 32],
    hashlock: PublicKey,
    seqlock: PublicKey,
    network: usize,
}

fn tx_cases() -> Vec<TxCase> {
    let mut r = rng("tx");
    (0..CASES)
        .map(|_| {
            let outputs = 1 + below(&mut r, 3) as usize;
            let parent = Transaction {
                version: bitcoin::transaction::Version(2 + below(&mut r, 2) as i32),
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint {
                        txid: Txid::from_byte_array(bytes32(&mut r)),
                        vout: below(&mut r, 4) as u32,
                    },
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                }],
                output: (0..outputs)
                    .map(|_| TxOut {
                        value: amount(&mut r),
                        script_pubkey: template::p2tr_script(&public_key(&mut r)),
                    })
                    .collect(),
            };
            TxCase {
                vout: below(&mut r, outputs as u64) as u32,
                receiver: public_key(&mut r),
                node_seq: sequence(&mut r),
                refund_seq: sequence(&mut r),
                connector: OutPoint {
                    txid: Txid::from_byte_array(bytes32(&mut r)),
                    vout: below(&mut r, 8) as u32,
                },
                connector_out: TxOut {
                    value: Amount::from_sat(1 + below(&mut r, 10_000)),
                    script_pubkey: template::p2tr_script(&public_key(&mut r)),
                },
                hash: bytes32(&mut r),
                hashlock: public_key(&mut r),
                seqlock: public_key(&mut r),
                network: below(&mut r, 5) as usize,
                parent,
            }
        })
        .collect()
}

fn tx_case_json(c: &TxCase) -> Value {
    json!({
        "parent_tx": serialize_hex(&c.parent),
        "vout": c.vout,
        "receiver": hex::encode(c.receiver.serialize()),
        "node_seq": c.node_seq,
        "refund_seq": c.refund_seq,
        // scure takes txids in display order, as `Txid`'s Display prints them.
        "connector_txid": c.connector.txid.to_string(),
        "connector_vout": c.connector.vout,
        "connector_script": c.connector_out.script_pubkey.to_hex_string(),
        "connector_value": c.connector_out.value.to_sat().to_string(),
        "hash": hex::encode(c.hash),
        "hashlock_pk": hex::encode(c.hashlock.serialize()),
        "seqlock_pk": hex::encode(c.seqlock.serialize()),
        "network": c.network,
    })
}

/// The same results from the reference node. `mutate` is applied to every transaction before it
/// is serialised (the identity in the real check; a one-byte change in the self-test).
fn tx_ours(c: &TxCase, mutate: &dyn Fn(&mut Transaction)) -> Value {
    let show = |tx: &Transaction| {
        let mut tx = tx.clone();
        mutate(&mut tx);
        hex_tx(&tx)
    };
    let pair = |p: &template::NodeTxs| json!({ "cpfp": show(&p.cpfp), "direct": show(&p.direct) });
    let refunds = |r: &RefundTxs| {
        json!({
            "cpfp": show(&r.cpfp),
            "direct": r.direct.as_ref().map_or(Value::Null, show),
            "direct_from_cpfp": show(&r.direct_from_cpfp),
        })
    };
    let network = SparkNetwork::ALL[c.network];
    let mut out = serde_json::Map::new();

    let spend = |vout: u32| OutPoint {
        txid: c.parent.compute_txid(),
        vout,
    };
    let (root_seq, root_direct) = timelock::root_node_sequences();
    let root = template::node_txs(
        spend(c.vout),
        &c.parent.output[c.vout as usize],
        root_seq,
        root_direct,
    );
    out.insert("root_node".into(), pair(&root));
    // A leaf's first node tx carries the initial timelock, like a fresh refund: (2000, 2050).
    let (init_seq, init_direct) = timelock::initial_refund_sequences();
    let initial = template::node_txs(spend(0), &c.parent.output[0], init_seq, init_direct);
    out.insert("initial_node".into(), pair(&initial));
    let zero_timelock = template::node_txs(spend(0), &c.parent.output[0], root_seq, root_direct);
    out.insert("zero_timelock_node".into(), pair(&zero_timelock));
    // The SDK refuses a current tx whose sequence is 0 before decrementing.
    let decremented = match c.node_seq {
        0 => Err(()),
        s => timelock::wallet_next_sequences(Sequence(s), false).map_err(|_| ()),
    };
    out.insert(
        "decremented_node".into(),
        match decremented {
            Ok((s, d)) => pair(&template::node_txs(spend(0), &c.parent.output[0], s, d)),
            Err(()) => json!("error"),
        },
    );

    let leaf = |seq: Sequence| {
        template::leaf_refund_txs(&initial.cpfp, Some(&initial.direct), &c.receiver, seq)
            .expect("the initial node has output 0")
    };
    let initial_refunds = leaf(init_seq);
    out.insert("initial_refunds".into(), refunds(&initial_refunds));
    let decremented_seq = timelock::decremented_refund_sequence(Sequence(c.refund_seq));
    out.insert(
        "decremented_refunds".into(),
        decremented_seq
            .as_ref()
            .map_or(json!("error"), |s| refunds(&leaf(*s))),
    );
    let current = timelock::round_down_sequence(Sequence(c.refund_seq));
    out.insert("current_refunds".into(), refunds(&leaf(current)));
    let connector_refunds = decremented_seq
        .as_ref()
        .ok()
        .map(|s| connector::connector_refund_txs(leaf(*s), c.connector));
    out.insert(
        "connector_refunds".into(),
        connector_refunds.as_ref().map_or(json!("error"), refunds),
    );
    let htlc_refunds =
        timelock::htlc_next_sequences(Sequence(c.refund_seq), false).map(|(s, d)| {
            htlc::lightning_htlc_refund_txs(
                &initial.cpfp,
                Some(&initial.direct),
                s,
                d,
                &c.hash,
                &c.hashlock,
                &c.seqlock,
            )
            .expect("the initial node has output 0")
        });
    out.insert(
        "htlc_refunds".into(),
        htlc_refunds.as_ref().map_or(json!("error"), refunds),
    );

    let sighash = |tx: &Transaction, input: usize, prevouts: &[TxOut]| {
        Value::String(hex::encode(
            sighash::key_spend_sighash(tx, input, prevouts).expect("sighash"),
        ))
    };
    out.insert(
        "sighash_node".into(),
        sighash(&initial.cpfp, 0, &[c.parent.output[0].clone()]),
    );
    out.insert(
        "sighash_refund".into(),
        sighash(&initial_refunds.cpfp, 0, &[initial.cpfp.output[0].clone()]),
    );
    out.insert(
        "sighash_connector".into(),
        connector_refunds.as_ref().map_or(json!("error"), |r| {
            let prevouts = [initial.cpfp.output[0].clone(), c.connector_out.clone()];
            json!([
                sighash(&r.cpfp, 0, &prevouts),
                sighash(&r.cpfp, 1, &prevouts)
            ])
        }),
    );
    let zero = template::leaf_refund_txs(&root.cpfp, Some(&root.direct), &c.receiver, init_seq)
        .expect("the root node has output 0");
    out.insert("zero_node_refunds".into(), refunds(&zero));
    out.insert(
        "p2tr_address".into(),
        json!(address::p2tr_address(&c.receiver, network)),
    );
    out.insert(
        "spark_address".into(),
        json!(address::spark_address(&c.receiver, network)),
    );
    Value::Object(out)
}

/// Table rows of the transaction check, named after the SDK builders.
const TX_ROWS: [(&str, &str); 15] = [
    ("root_node", "tx: createRootNodeTx (cpfp, direct)"),
    ("initial_node", "tx: createInitialTimelockNodeTx"),
    ("zero_timelock_node", "tx: createZeroTimelockNodeTx"),
    ("decremented_node", "tx: createDecrementedTimelockNodeTx"),
    (
        "initial_refunds",
        "tx: createInitialTimelockRefundTxs (3 variants)",
    ),
    (
        "zero_node_refunds",
        "tx: refunds of a CSV-0 root (no direct)",
    ),
    (
        "decremented_refunds",
        "tx: createDecrementedTimelockRefundTxs",
    ),
    ("current_refunds", "tx: createCurrentTimelockRefundTxs"),
    ("connector_refunds", "tx: createConnectorRefundTxs"),
    ("htlc_refunds", "tx: createRefundTxsForLightning (HTLC)"),
    ("sighash_node", "sighash: getSigHashFromTx (node)"),
    ("sighash_refund", "sighash: getSigHashFromTx (refund)"),
    (
        "sighash_connector",
        "sighash: getSigHashFromMultiInputTx (connector)",
    ),
    ("p2tr_address", "address: getP2TRAddressFromPublicKey"),
    ("spark_address", "address: encodeSparkAddress"),
];

/// The cases and the SDK's answers, computed once for both tests that use them.
fn tx_oracle() -> &'static (Vec<TxCase>, Vec<Value>) {
    static ORACLE: OnceLock<(Vec<TxCase>, Vec<Value>)> = OnceLock::new();
    ORACLE.get_or_init(|| {
        let cases = tx_cases();
        let json: Vec<Value> = cases.iter().map(tx_case_json).collect();
        let results = oracle("tx", &json);
        (cases, results)
    })
}

fn check_tx(table: &mut Table, mutate: &dyn Fn(&mut Transaction)) {
    let (cases, results) = tx_oracle();
    for (i, (c, sdk)) in cases.iter().zip(results).enumerate() {
        let ours = tx_ours(c, mutate);
        for (field, row) in TX_ROWS.iter() {
            table.compare(
                row,
                i,
                sdk.get(*field).unwrap_or(&Value::Null),
                &ours[*field],
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Check 1b: sequence arithmetic.

fn check_sequences(table: &mut Table) {
    let mut r = rng("sequence");
    let seqs: Vec<u32> = (0..CASES).map(|_| sequence(&mut r)).collect();
    let cases: Vec<Value> = seqs.iter().map(|s| json!({ "seq": s })).collect();
    let results = oracle("sequence", &cases);
    let pair = |r: Result<(Sequence, Sequence), timelock::TimelockError>| {
        r.map_or(json!("error"), |(a, b)| json!([a.0, b.0]))
    };
    for (i, (s, sdk)) in seqs.iter().zip(&results).enumerate() {
        let s = Sequence(*s);
        let rows = [
            (
                "refund",
                "sequence: getNextTransactionSequence",
                timelock::wallet_next_sequences(s, false),
            ),
            (
                "node",
                "sequence: getNextTransactionSequence(node)",
                timelock::wallet_next_sequences(s, true),
            ),
            (
                "htlc",
                "sequence: getNextHTLCTransactionSequence",
                timelock::htlc_next_sequences(s, false),
            ),
            (
                "htlc_node",
                "sequence: getNextHTLCTransactionSequence(node)",
                timelock::htlc_next_sequences(s, true),
            ),
        ];
        for (field, row, ours) in rows {
            table.compare(row, i, &sdk[field], &pair(ours));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Check 2: ECIES both ways.

fn check_ecies(table: &mut Table) {
    let mut r = rng("ecies");
    struct Case {
        sk: SecretKey,
        msg: Vec<u8>,
    }
    let mut cases = Vec::new();
    let mut json_cases = Vec::new();
    for _ in 0..CASES {
        let sk = secret_key(&mut r);
        let mut msg = vec![0u8; 1 + below(&mut r, 96) as usize];
        r.fill_bytes(&mut msg);
        let pk = PublicKey::from_secret_key(secp(), &sk);
        let cipher = ecies::encrypt(&pk, &msg, &mut r);
        let mut tampered = cipher.clone();
        let at = below(&mut r, tampered.len() as u64) as usize;
        tampered[at] ^= 1 << below(&mut r, 8);
        json_cases.push(json!({
            "receiver_sk": hex::encode(sk.secret_bytes()),
            "receiver_pk": hex::encode(pk.serialize()),
            "msg": hex::encode(&msg),
            "ours_cipher": hex::encode(&cipher),
            "ours_cipher_tampered": hex::encode(&tampered),
        }));
        cases.push(Case { sk, msg });
    }
    let results = oracle("ecies", &json_cases);
    for (i, ((c, j), sdk)) in cases.iter().zip(&json_cases).zip(&results).enumerate() {
        let msg = json!(hex::encode(&c.msg));
        let sdk_cipher = hex::decode(sdk["sdk_cipher"].as_str().unwrap_or("")).unwrap_or_default();
        let ours_plain =
            ecies::decrypt(&c.sk, &sdk_cipher).map_or(json!("error"), |p| json!(hex::encode(p)));
        table.compare("ECIES: SDK encrypts, we decrypt", i, &msg, &ours_plain);
        table.compare(
            "ECIES: we encrypt, SDK decrypts",
            i,
            &msg,
            &sdk["sdk_plain_of_ours"],
        );
        let tampered =
            hex::decode(j["ours_cipher_tampered"].as_str().unwrap_or("")).unwrap_or_default();
        let ours_rejects = ecies::decrypt(&c.sk, &tampered).is_err();
        let sdk_rejects = sdk["sdk_plain_of_tampered"] == "error";
        table.expect(
            "ECIES: one flipped bit rejected by both",
            i,
            ours_rejects && sdk_rejects,
            || format!("ours rejects {ours_rejects}, SDK rejects {sdk_rejects}"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Check 3: Feldman VSS both ways.

fn share_json(s: &vss::VssShare, threshold: u16) -> Value {
    json!({
        "threshold": threshold,
        "index": s.x,
        "share": hex::encode(s.share.0),
        "proofs": s.proofs.iter().map(|p| hex::encode(p.serialize())).collect::<Vec<_>>(),
    })
}

fn share_from_json(v: &Value) -> Option<vss::VssShare> {
    let bytes: [u8; 32] = hex::decode(v["share"].as_str()?).ok()?.try_into().ok()?;
    Some(vss::VssShare {
        x: u32::try_from(v["index"].as_u64()?).ok()?,
        share: Scalar(bytes),
        proofs: v["proofs"]
            .as_array()?
            .iter()
            .map(|p| PublicKey::from_slice(&hex::decode(p.as_str()?).ok()?).ok())
            .collect::<Option<Vec<_>>>()?,
    })
}

fn check_vss(table: &mut Table) {
    let mut r = rng("vss");
    struct Case {
        secret: Scalar,
        threshold: u16,
        subset: Vec<usize>,
    }
    let mut cases = Vec::new();
    let mut json_cases = Vec::new();
    for _ in 0..CASES {
        let n = 2 + below(&mut r, 6) as u16;
        let threshold = 2 + below(&mut r, u64::from(n) - 1) as u16;
        let secret = Scalar::random(&mut r);
        let ours = vss::split_with_proofs(&secret, threshold, n, &mut r).expect("split");
        let mut tampered = ours[below(&mut r, u64::from(n)) as usize].clone();
        tampered.share = tampered.share.add(&Scalar::from_u32(1));
        // A random t-subset, in random order.
        let mut subset: Vec<usize> = (0..usize::from(n)).collect();
        for k in (1..subset.len()).rev() {
            subset.swap(k, below(&mut r, k as u64 + 1) as usize);
        }
        subset.truncate(usize::from(threshold));
        json_cases.push(json!({
            "secret": hex::encode(secret.0),
            "threshold": threshold,
            "n": n,
            "ours": ours.iter().map(|s| share_json(s, threshold)).collect::<Vec<_>>(),
            "ours_tampered": share_json(&tampered, threshold),
            "ours_subset": subset.iter().map(|&k| share_json(&ours[k], threshold)).collect::<Vec<_>>(),
        }));
        cases.push(Case {
            secret,
            threshold,
            subset,
        });
    }
    let results = oracle("vss", &json_cases);
    for (i, (c, sdk)) in cases.iter().zip(&results).enumerate() {
        let secret = json!(hex::encode(c.secret.0));
        let sdk_shares: Vec<Option<vss::VssShare>> = sdk["sdk_shares"]
            .as_array()
            .map(|a| a.iter().map(share_from_json).collect())
            .unwrap_or_default();
        let bad: Vec<String> = sdk_shares
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_none_or(|s| vss::validate_share(s).is_err()))
            .map(|(k, _)| k.to_string())
            .collect();
        table.expect(
            "VSS: SDK shares pass our validation",
            i,
            !sdk_shares.is_empty() && bad.is_empty(),
            || format!("SDK shares {bad:?} rejected"),
        );
        let ours_valid = sdk["ours_valid"].as_array().cloned().unwrap_or_default();
        table.expect(
            "VSS: our shares pass SDK validation",
            i,
            !ours_valid.is_empty() && ours_valid.iter().all(|v| v == true),
            || format!("SDK validation {ours_valid:?}"),
        );
        // Recovery: the SDK from our shares, we from a t-subset of the SDK's (in our order).
        let picked: Option<Vec<(u32, Scalar)>> = c
            .subset
            .iter()
            .map(|&k| sdk_shares.get(k)?.as_ref().map(|s| (s.x, s.share)))
            .collect();
        let ours_recovers = picked
            .and_then(|p| vss::recover_secret(&p).ok())
            .map_or(json!("error"), |s| json!(hex::encode(s.0)));
        table.compare(
            "VSS: SDK recovers our secret",
            i,
            &secret,
            &sdk["sdk_recovers_ours"],
        );
        table.compare(
            "VSS: we recover the SDK's secret",
            i,
            &secret,
            &ours_recovers,
        );
        let mut tampered = sdk_shares.first().cloned().flatten();
        if let Some(t) = tampered.as_mut() {
            t.share = t.share.add(&Scalar::from_u32(1));
        }
        let ours_rejects = tampered
            .as_ref()
            .is_some_and(|t| vss::validate_share(t).is_err());
        let sdk_rejects = sdk["ours_tampered_valid"] == false;
        table.expect(
            "VSS: tampered share rejected by both",
            i,
            ours_rejects && sdk_rejects,
            || format!("ours rejects {ours_rejects}, SDK rejects {sdk_rejects}"),
        );
        let _ = c.threshold;
    }
}

// ---------------------------------------------------------------------------------------------
// Check 4: FROST with the user as mandatory signer.

fn commitment_json(c: &signing::NonceCommitment) -> Value {
    let c = frost::round1::SigningCommitments::deserialize(&c.0).expect("our commitment parses");
    json!({
        "hiding": hex::encode(c.hiding().serialize().expect("point")),
        "binding": hex::encode(c.binding().serialize().expect("point")),
    })
}

fn identifier_hex(op: OperatorId) -> String {
    hex::encode(signing::operator_identifier(op).serialize())
}

fn check_frost(table: &mut Table) {
    let mut r = rng("frost");
    struct Case {
        job: SigningJob,
        ours: bitcoin::secp256k1::schnorr::Signature,
        our_user_share: String,
        ours_refuses: bool,
    }
    let mut cases = Vec::new();
    let mut json_cases = Vec::new();
    for _ in 0..CASES {
        let n = 3 + below(&mut r, 3) as u16;
        let t = 2 + below(&mut r, u64::from(n) - 1) as u16;
        let keyshares: BTreeMap<OperatorId, KeyShare> =
            KeyShare::deal(&Scalar::random(&mut r), n, t, &mut r)
                .expect("deal")
                .into_iter()
                .enumerate()
                .map(|(i, k)| (OperatorId(i as u16), k))
                .collect();
        let mut ids: Vec<OperatorId> = keyshares.keys().copied().collect();
        for k in (1..ids.len()).rev() {
            ids.swap(k, below(&mut r, k as u64 + 1) as usize);
        }
        ids.truncate(usize::from(t));
        let user_sk = secret_key(&mut r);
        let user_pk = PublicKey::from_secret_key(secp(), &user_sk);
        let any = &keyshares[&OperatorId(0)];
        let verifying_key = any.public_key.combine(&user_pk).expect("Y is not infinity");
        let message = bytes32(&mut r);
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for op in &ids {
            let (nonce, commitment) = signing::commit(&keyshares[op].secret_share, &mut r);
            nonces.insert(*op, nonce);
            commitments.insert(*op, commitment);
        }
        let (user_nonce, user_commitment) =
            signing::commit(&Scalar::from_secret_key(&user_sk), &mut r);
        let job = SigningJob {
            message,
            verifying_key,
            user_public_key: user_pk,
            operator_commitments: commitments.clone(),
            user_commitment: user_commitment.clone(),
        };
        let operator_shares: BTreeMap<OperatorId, signing::SignatureShare> = ids
            .iter()
            .map(|op| {
                let s = signing::sign_as_operator(&job, *op, &keyshares[op], &nonces[op])
                    .expect("operator share");
                (*op, s)
            })
            .collect();
        let user_share = signing::sign_as_user(&job, &user_sk, &user_nonce).expect("user share");
        let ours = signing::aggregate(&job, &operator_shares, &user_share, &any.public_shares)
            .expect("our aggregate");
        // One operator's share plus one: both aggregators must refuse it, ours naming the culprit.
        let cheater = ids[below(&mut r, ids.len() as u64) as usize];
        let mut tampered = operator_shares.clone();
        let bumped = Scalar(tampered[&cheater].0).add(&Scalar::from_u32(1));
        tampered.insert(cheater, signing::SignatureShare(bumped.0));
        let ours_refuses = signing::aggregate(&job, &tampered, &user_share, &any.public_shares)
            == Err(signing::SigningError::InvalidShare {
                culprits: vec![signing::Signer::Operator(cheater)],
            });
        let nonce =
            frost::round1::SigningNonces::deserialize(&user_nonce.0).expect("our nonce parses");
        json_cases.push(json!({
            "message": hex::encode(message),
            "verifying_key": hex::encode(verifying_key.serialize()),
            "user_sk": hex::encode(user_sk.secret_bytes()),
            "user_pk": hex::encode(user_pk.serialize()),
            "user_nonce": {
                "hiding": hex::encode(nonce.hiding().serialize()),
                "binding": hex::encode(nonce.binding().serialize()),
            },
            "user_commitment": commitment_json(&user_commitment),
            "operator_commitments": commitments.iter().map(|(op, c)| (identifier_hex(*op), commitment_json(c))).collect::<serde_json::Map<_, _>>(),
            "operator_shares": operator_shares.iter().map(|(op, s)| (identifier_hex(*op), json!(hex::encode(s.0)))).collect::<serde_json::Map<_, _>>(),
            "operator_public_shares": ids.iter().map(|op| (identifier_hex(*op), json!(hex::encode(any.public_shares[op].serialize())))).collect::<serde_json::Map<_, _>>(),
            "operator_shares_tampered": tampered.iter().map(|(op, s)| (identifier_hex(*op), json!(hex::encode(s.0)))).collect::<serde_json::Map<_, _>>(),
            "our_user_share": hex::encode(user_share.0),
        }));
        cases.push(Case {
            ours_refuses,
            job,
            ours,
            our_user_share: hex::encode(user_share.0),
        });
    }
    let results = oracle("frost", &json_cases);
    for (i, (c, sdk)) in cases.iter().zip(&results).enumerate() {
        table.compare(
            "FROST: user share (SDK signFrost == ours)",
            i,
            &sdk["sdk_user_share"],
            &json!(c.our_user_share),
        );
        let mixed = sdk["sdk_aggregate_with_sdk_user"]
            .as_str()
            .unwrap_or("error");
        let verifies = hex::decode(mixed)
            .ok()
            .and_then(|b| bitcoin::secp256k1::schnorr::Signature::from_slice(&b).ok())
            .is_some_and(|sig| signing::verify(&c.job.verifying_key, &c.job.message, &sig));
        table.expect(
            "FROST: SDK aggregates our operators + SDK user, secp256k1 verifies",
            i,
            verifies,
            || format!("SDK aggregate {mixed}"),
        );
        table.compare(
            "FROST: SDK aggregates all our shares == our signature",
            i,
            &sdk["sdk_aggregate_of_ours"],
            &json!(hex::encode(c.ours.serialize())),
        );
        let sdk_refuses = sdk["sdk_aggregate_tampered"] == "error";
        table.expect(
            "FROST: a tampered operator share is refused by both aggregators",
            i,
            c.ours_refuses && sdk_refuses,
            || format!("ours refuses {}, SDK refuses {sdk_refuses}", c.ours_refuses),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Check 4b: FROST under an adaptor point (the SDK's `adaptorPubKey`, leaf swaps v2, §4.3).

fn check_frost_adaptor(table: &mut Table) {
    use reference_node::crypto::adaptor::{self, PreSignature};
    use reference_node::crypto::adaptor_frost;
    let mut r = rng("frost-adaptor");
    struct Case {
        job: SigningJob,
        a: Scalar,
        t: PublicKey,
        ours: PreSignature,
        our_user_share: String,
        ours_refuses: bool,
    }
    let mut cases = Vec::new();
    let mut json_cases = Vec::new();
    for _ in 0..CASES {
        let n = 3 + below(&mut r, 3) as u16;
        let t = 2 + below(&mut r, u64::from(n) - 1) as u16;
        let keyshares: BTreeMap<OperatorId, KeyShare> = KeyShare::deal(&Scalar::random(&mut r), n, t, &mut r)
            .expect("deal")
            .into_iter()
            .enumerate()
            .map(|(i, k)| (OperatorId(i as u16), k))
            .collect();
        let mut ids: Vec<OperatorId> = keyshares.keys().copied().collect();
        for k in (1..ids.len()).rev() {
            ids.swap(k, below(&mut r, k as u64 + 1) as usize);
        }
        ids.truncate(usize::from(t));
        let user_sk = secret_key(&mut r);
        let user_pk = PublicKey::from_secret_key(secp(), &user_sk);
        let any = &keyshares[&OperatorId(0)];
        let verifying_key = any.public_key.combine(&user_pk).expect("Y is not infinity");
        let message = bytes32(&mut r);
        let (a, adaptor_point) = adaptor::new_secret(&mut r);
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for op in &ids {
            let (nonce, commitment) = signing::commit(&keyshares[op].secret_share, &mut r);
            nonces.insert(*op, nonce);
            commitments.insert(*op, commitment);
        }
        let (user_nonce, user_commitment) = signing::commit(&Scalar::from_secret_key(&user_sk), &mut r);
        let job = SigningJob { message, verifying_key, user_public_key: user_pk, operator_commitments: commitments.clone(), user_commitment: user_commitment.clone() };
        let operator_shares: BTreeMap<OperatorId, signing::SignatureShare> = ids
            .iter()
            .map(|op| (*op, adaptor_frost::sign_as_operator(&job, *op, &keyshares[op], &nonces[op], &adaptor_point).expect("operator share")))
            .collect();
        let user_share = adaptor_frost::sign_as_user(&job, &user_sk, &user_nonce, &adaptor_point).expect("user share");
        let ours = adaptor_frost::aggregate(&job, &operator_shares, &user_share, &any.public_shares, &adaptor_point).expect("our pre-signature");
        let cheater = ids[below(&mut r, ids.len() as u64) as usize];
        let mut tampered = operator_shares.clone();
        let bumped = Scalar(tampered[&cheater].0).add(&Scalar::from_u32(1));
        tampered.insert(cheater, signing::SignatureShare(bumped.0));
        let ours_refuses = adaptor_frost::aggregate(&job, &tampered, &user_share, &any.public_shares, &adaptor_point)
            == Err(signing::SigningError::InvalidShare { culprits: vec![signing::Signer::Operator(cheater)] });
        let nonce = frost::round1::SigningNonces::deserialize(&user_nonce.0).expect("our nonce parses");
        json_cases.push(json!({
            "message": hex::encode(message),
            "verifying_key": hex::encode(verifying_key.serialize()),
            "user_sk": hex::encode(user_sk.secret_bytes()),
            "user_pk": hex::encode(user_pk.serialize()),
            "user_nonce": {
                "hiding": hex::encode(nonce.hiding().serialize()),
                "binding": hex::encode(nonce.binding().serialize()),
            },
            "user_commitment": commitment_json(&user_commitment),
            "operator_commitments": commitments.iter().map(|(op, c)| (identifier_hex(*op), commitment_json(c))).collect::<serde_json::Map<_, _>>(),
            "operator_shares": operator_shares.iter().map(|(op, s)| (identifier_hex(*op), json!(hex::encode(s.0)))).collect::<serde_json::Map<_, _>>(),
            "operator_public_shares": ids.iter().map(|op| (identifier_hex(*op), json!(hex::encode(any.public_shares[op].serialize())))).collect::<serde_json::Map<_, _>>(),
            "operator_shares_tampered": tampered.iter().map(|(op, s)| (identifier_hex(*op), json!(hex::encode(s.0)))).collect::<serde_json::Map<_, _>>(),
            "our_user_share": hex::encode(user_share.0),
            "adaptor": hex::encode(adaptor_point.serialize()),
        }));
        cases.push(Case { job, a, t: adaptor_point, ours, our_user_share: hex::encode(user_share.0), ours_refuses });
    }
    // The driver's frost check passes `adaptorPubKey` to signFrost / aggregateFrost when a case
    // names an adaptor.
    let results = oracle("frost", &json_cases);
    for (i, (c, sdk)) in cases.iter().zip(&results).enumerate() {
        table.compare("FROST adaptor: user share under T (SDK signFrost == ours)", i, &sdk["sdk_user_share"], &json!(c.our_user_share));
        table.compare("FROST adaptor: SDK aggregates all our shares == our pre-signature", i, &sdk["sdk_aggregate_of_ours"], &json!(hex::encode(c.ours.to_bytes())));
        // The SDK's aggregate (SDK user share + our operators) is a pre-signature: no BIP340
        // signature as it is, one once completed with a, and a comes back out of the pair.
        let (q, _) = adaptor_frost::output_key(&c.job.verifying_key);
        let mixed = sdk["sdk_aggregate_with_sdk_user"].as_str().unwrap_or("error");
        let pre = hex::decode(mixed).ok().and_then(|b| {
            let b: [u8; 64] = b.try_into().ok()?;
            Some(PreSignature { r: b[..32].try_into().ok()?, s: Scalar::from_bytes(b[32..].try_into().ok()?)? })
        });
        let outcome = pre.map(|pre| {
            let raw = bitcoin::secp256k1::schnorr::Signature::from_slice(&pre.to_bytes()).ok();
            let plain = raw.is_some_and(|sig| signing::verify(&c.job.verifying_key, &c.job.message, &sig));
            let completed = adaptor::complete(&pre, &c.a, &c.job.message, &q).ok();
            let extracted = completed.and_then(|sig| adaptor::extract(&pre, &sig, &c.t).ok());
            (plain, completed.is_some(), extracted == Some(c.a))
        });
        table.expect(
            "FROST adaptor: SDK pre-signature fails BIP340, completes with a, yields a",
            i,
            outcome == Some((false, true, true)),
            || format!("SDK aggregate {mixed}: (verifies raw, completes, extracts a) = {outcome:?}"),
        );
        // The SDK (0.8.8) does not check an aggregate made under an adaptor point: it returns
        // one for a tampered share too. Ours refuses and names the operator; what the SDK
        // returns must then be worthless: it does not complete to a signature with a.
        let tampered = sdk["sdk_aggregate_tampered"].as_str().unwrap_or("error");
        let sdk_useless = tampered == "error"
            || hex::decode(tampered).ok().and_then(|b| {
                let b: [u8; 64] = b.try_into().ok()?;
                let pre = PreSignature { r: b[..32].try_into().ok()?, s: Scalar::from_bytes(b[32..].try_into().ok()?)? };
                adaptor::complete(&pre, &c.a, &c.job.message, &q).ok()
            }).is_none();
        table.expect("FROST adaptor: tampered share refused by ours; SDK's aggregate of it does not complete", i, c.ours_refuses && sdk_useless, || {
            format!("ours refuses {}, SDK aggregate {tampered} useless {sdk_useless}", c.ours_refuses)
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Check 5: the SDK's own unit-test vectors (src/tests/*.test.ts of 0.8.8) against our functions.

fn pk(hex_str: &str) -> PublicKey {
    PublicKey::from_slice(&hex::decode(hex_str).expect("hex")).expect("key")
}

fn tx(hex_str: &str) -> Transaction {
    bitcoin::consensus::encode::deserialize_hex(hex_str).expect("tx")
}

fn check_vectors(table: &mut Table) {
    let mut case = 0;
    let mut vector = |table: &mut Table, row: &str, sdk: Value, ours: Value| {
        table.compare(row, case, &sdk, &ours);
        case += 1;
    };
    let addr = "vectors: bitcoin.test.ts (P2TR, sighash)";
    // bitcoin.test.ts "test p2tr address from public key".
    vector(
        table,
        addr,
        json!("bc1pmfr3p9j00pfxjh0zmgp99y8zftmd3s5pmedqhyptwy6lm87hf5sspknck9"),
        json!(address::p2tr_address(
            &pk("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
            SparkNetwork::Mainnet
        )),
    );
    vector(
        table,
        addr,
        json!("tb1p8dlmzllfah294ntwatr8j5uuvcj7yg0dete94ck2krrk0ka2c9qqex96hv"),
        json!(address::p2tr_address(
            &pk("03797dd653040d344fd048c1ad05d4cbcb2178b30c6a0c4276994795f3e833da41"),
            SparkNetwork::Testnet
        )),
    );
    // "test script from pubkey".
    vector(
        table,
        addr,
        json!("51208af8e5e92783248418d5c68007dc8659a2100261b5bb561efc28dde94ec8cb93"),
        json!(template::p2tr_script(&pk(
            "03ef261da8259f5ea86abe1b7d658ebd13fe2b2ce2418dabe854ccec67bdb9ba87"
        ))
        .to_hex_string()),
    );
    // "test sig hash from tx": a v2 tx spending prevTx:0 (default sequence) paying 70000 sat back
    // to the same script.
    let prev = tx("020000000001010cb9feccc0bdaac30304e469c50b4420c13c43d466e13813fcf42a73defd3f010000000000ffffffff018038010000000000225120d21e50e12ae122b4a5662c09b67cec7449c8182913bc06761e8b65f0fa2242f701400536f9b7542799f98739eeb6c6adaeb12d7bd418771bc5c6847f2abd19297bd466153600af26ccf0accb605c11ad667c842c5713832af4b7b11f1bcebe57745900000000");
    let spend = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: prev.compute_txid(),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(70_000),
            script_pubkey: prev.output[0].script_pubkey.clone(),
        }],
    };
    vector(
        table,
        addr,
        json!("8da5e7aa2b03491d7c2f4359ea4968dd58f69adf9af1a2c6881be0295591c293"),
        json!(hex::encode(
            sighash::key_spend_sighash(&spend, 0, &[prev.output[0].clone()]).expect("sighash")
        )),
    );

    // address.test.ts "knownSparkAddress" (current and legacy prefix).
    let spark = "vectors: address.test.ts (Spark address)";
    vector(
        table,
        spark,
        json!("sparkrt1pgssx5us3wkqjza8g80xz3a9gznx25msq6g3ty8exfym9q3ahcv86vsnxxdy83"),
        json!(address::spark_address(
            &pk("0353908bac090ba741de6147a540a665537006911590f93249b2823dbe187d3213"),
            SparkNetwork::Regtest
        )),
    );
    vector(
        table,
        spark,
        json!("sprt1pgssx63fa5g6uyv450rajp5ndwy9laxzpsp9e37su58jddmcdsvhgm5n7y0ud6"),
        json!(address::legacy_spark_address(
            &pk("036a29ed11ae1195a3c7d906936b885ff4c20c025cc7d0e50f26b7786c19746e93"),
            SparkNetwork::Regtest
        )),
    );

    // transaction-construction.test.ts, on its parent tx and receiving key.
    let cons = "vectors: transaction-construction.test.ts";
    let receiver = pk("03ef261da8259f5ea86abe1b7d658ebd13fe2b2ce2418dabe854ccec67bdb9ba87");
    let parent_out = prev.output[0].clone();
    let at = |vout| OutPoint {
        txid: prev.compute_txid(),
        vout,
    };
    let (s0, d0) = timelock::root_node_sequences();
    let root = template::node_txs(at(0), &parent_out, s0, d0);
    vector(
        table,
        cons,
        json!([
            0,
            50,
            2,
            1,
            parent_out.value.to_sat(),
            parent_out.value.to_sat() - 955
        ]),
        json!([
            root.cpfp.input[0].sequence.0,
            root.direct.input[0].sequence.0,
            root.cpfp.output.len(),
            root.direct.output.len(),
            root.cpfp.output[0].value.to_sat(),
            root.direct.output[0].value.to_sat(),
        ]),
    );
    // Refunds of the zero-timelock root: no direct refund; CPFP at INITIAL_SEQUENCE.
    let (init, init_direct) = timelock::initial_refund_sequences();
    let zero = template::leaf_refund_txs(&root.cpfp, None, &receiver, init).expect("refunds");
    vector(
        table,
        cons,
        json!([false, 2000]),
        json!([zero.direct.is_some(), zero.cpfp.input[0].sequence.0]),
    );
    let initial = template::node_txs(at(0), &parent_out, init, init_direct);
    let all = template::leaf_refund_txs(&initial.cpfp, Some(&initial.direct), &receiver, init)
        .expect("refunds");
    vector(table, cons, json!(true), json!(all.direct.is_some()));
    // Decrement 2000 → 1900, and a non-aligned 550 → 400.
    for (from, to) in [(2000u32, 1900u32), (550, 400)] {
        let s = timelock::decremented_refund_sequence(Sequence(from)).expect("decrement");
        vector(table, cons, json!(to), json!(s.0 & 0xffff));
    }

    // transaction.test.ts "checkIfValidSequence".
    let valid = "vectors: transaction.test.ts (sequence validity)";
    for (seq, ok) in [
        ((1u32 << 31) | 1000, false),
        ((1 << 22) | 1000, false),
        (1000, true),
    ] {
        vector(
            table,
            valid,
            json!(ok),
            json!(timelock::validate_sequence(Sequence(seq)).is_ok()),
        );
    }

    // secret-sharing.test.ts "test secret sharing": split 3-of-5, all shares valid, 3 recover.
    let vss_row = "vectors: secret-sharing.test.ts";
    let secret_hex = "7c4d3670ce7f1ab216a0cfca942b10578a919b0f8f33d4c01f05e43b3a81707c";
    let secret = {
        // 56223216183876340914672117764605975762373003965917245943571257601961255596156 in hex.
        let bytes: [u8; 32] = hex::decode(secret_hex)
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        Scalar(bytes)
    };
    let shares = vss::split_with_proofs(&secret, 3, 5, &mut rng("vectors")).expect("split");
    let all_valid = shares.iter().all(|s| vss::validate_share(s).is_ok());
    let recovered = vss::recover_secret(
        &shares[..3]
            .iter()
            .map(|s| (s.x, s.share))
            .collect::<Vec<_>>(),
    )
    .expect("recover");
    vector(
        table,
        vss_row,
        json!([true, secret_hex]),
        json!([all_valid, hex::encode(recovered.0)]),
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Every check, one table. Fails on any mismatch, after printing the table.
#[test]
fn interop_reference_node_matches_spark_sdk() {
    let mut table = Table::default();
    check_tx(&mut table, &|_| {});
    check_sequences(&mut table);
    check_ecies(&mut table);
    check_vss(&mut table);
    check_frost(&mut table);
    check_frost_adaptor(&mut table);
    check_vectors(&mut table);
    println!(
        "\nDifferential tests against @buildonspark/spark-sdk 0.8.8 (seed {SEED:#x}, {CASES} random cases per check)\n\n{}",
        table.render()
    );
    let bad = table.mismatches();
    assert!(
        bad.is_empty(),
        "mismatches with the SDK in: {bad:?}\n{}",
        table.render()
    );
}

/// The suite can fail: one byte of the anchor script (`51024e73` → `51024e74`) in our templates is
/// caught by every check of a transaction that carries an anchor, and only by those.
#[test]
fn interop_one_byte_change_in_a_template_is_caught() {
    let mut table = Table::default();
    let anchor = template::anchor_output().script_pubkey;
    check_tx(&mut table, &|tx| {
        for out in &mut tx.output {
            if out.script_pubkey == anchor {
                out.script_pubkey = ScriptBuf::from_bytes(vec![0x51, 0x02, 0x4e, 0x74]);
            }
        }
    });
    println!(
        "\nSelf-test: anchor script 51024e73 -> 51024e74 in our templates (the tx rows must mismatch)\n\n{}",
        table.render()
    );
    let caught = table.mismatches();
    let (_, results) = tx_oracle();
    for field in [
        "root_node",
        "initial_node",
        "zero_timelock_node",
        "decremented_node",
        "initial_refunds",
        "zero_node_refunds",
        "decremented_refunds",
        "current_refunds",
        "connector_refunds",
        "htlc_refunds",
    ] {
        let (_, row) = TX_ROWS.iter().find(|(f, _)| *f == field).expect("row");
        assert!(
            caught.contains(row),
            "a changed anchor byte went unnoticed by {row:?}"
        );
        // Every case the SDK built carries an anchor, so only its refusals still agree.
        let refused = results.iter().filter(|r| r[field] == "error").count();
        let r = &table.rows.iter().find(|(c, _)| c == row).expect("row").1;
        assert_eq!(r.identical, refused, "{row}: a case with an anchor passed");
        assert!(r
            .first_mismatch
            .as_deref()
            .is_some_and(|m| m.contains("differ at byte")));
    }
    // Sighashes and addresses do not serialise our txs: they must still agree.
    for row in [
        "address: encodeSparkAddress",
        "address: getP2TRAddressFromPublicKey",
    ] {
        assert!(!caught.contains(&row), "{row} should not be affected");
    }
}
