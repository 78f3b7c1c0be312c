//! Byte-exact checks of `reference_node::tx` against the Spark vectors (copied from
//! /work/shared/vectors into tests/vectors; see spark-vectors.md for provenance and strength).
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{schnorr, Message, PublicKey, XOnlyPublicKey};
use bitcoin::{
    Address, Amount, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use reference_node::tx::sighash::key_spend_sighash;
use reference_node::tx::template::{
    anchor_output, compare_transactions, maybe_apply_fee, node_txs, p2tr_script, refund_txs,
};
use reference_node::tx::timelock::{
    self, initial_refund_sequences, next_sequences, validate_sequence, TimelockError,
};
use serde_json::Value;
use std::str::FromStr;

const TX_JSON: &str = include_str!("vectors/spark-tx.json");
const DERIVED_JSON: &str = include_str!("vectors/spark-derived-tx.json");
const SEQUENCE_JSON: &str = include_str!("vectors/spark-sequence.json");
const ADDRESS_JSON: &str = include_str!("vectors/spark-address.json");

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("vector file is JSON")
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

fn tx(hex_str: &str) -> Transaction {
    deserialize(&hex::decode(hex_str).expect("hex")).expect("tx")
}

fn hex_of(t: &Transaction) -> String {
    hex::encode(serialize(t))
}

fn pk(hex_str: &str) -> PublicKey {
    PublicKey::from_str(hex_str).expect("pubkey")
}

fn raw(name: &str) -> Transaction {
    tx(s(&json(TX_JSON), &["raw_transactions", name, "raw_hex"]))
}

fn sighash_hex(t: &Transaction, input: usize, prevouts: &[TxOut]) -> String {
    hex::encode(key_spend_sighash(t, input, prevouts).expect("sighash"))
}

fn parse_seq(v: &Value) -> u32 {
    match v {
        Value::Number(n) => u32::try_from(n.as_u64().expect("u64")).expect("u32"),
        Value::String(x) => u32::from_str_radix(x.trim_start_matches("0x"), 16).expect("hex seq"),
        other => panic!("not a sequence: {other}"),
    }
}

/// The dummy parent of the derived vectors (spark-vectors §1.8).
fn dummy_prev() -> Transaction {
    let d = json(DERIVED_JSON);
    let t = tx(s(&d, &["dummy_prev_tx", "hex"]));
    assert_eq!(
        t.compute_txid().to_string(),
        s(&d, &["dummy_prev_tx", "txid"])
    );
    t
}

#[test]
fn derived_node_tx_pair() {
    let d = json(DERIVED_JSON);
    let parent = dummy_prev();
    let dest = p2tr_script(&pk(
        "031cd7599775b6959193029794b04dcd99d257cbec008d63e49fdf0f89a5f7c231",
    ));
    // construct_node_tx_pair pays `dest`; ours re-pays the parent output's script, so hand it a
    // parent output carrying `dest` at the dummy's value and outpoint.
    let parent_output = TxOut {
        value: parent.output[0].value,
        script_pubkey: dest,
    };
    let pair = node_txs(
        OutPoint {
            txid: parent.compute_txid(),
            vout: 0,
        },
        &parent_output,
        Sequence(1000),
        Sequence(1050),
    );
    assert_eq!(hex_of(&pair.cpfp), s(&d, &["node_tx_pair", "cpfp_node_tx"]));
    assert_eq!(
        hex_of(&pair.direct),
        s(&d, &["node_tx_pair", "direct_node_tx"])
    );
    let prevouts = [parent.output[0].clone()];
    assert_eq!(
        sighash_hex(&pair.cpfp, 0, &prevouts),
        s(&d, &["node_tx_pair", "cpfp_sighash"])
    );
    assert_eq!(
        sighash_hex(&pair.direct, 0, &prevouts),
        s(&d, &["node_tx_pair", "direct_sighash"])
    );
}

#[test]
fn derived_refund_trio() {
    let d = json(DERIVED_JSON);
    let v = &d["refund_tx_trio"];
    let parent = dummy_prev();
    let receiver = pk("031cd7599775b6959193029794b04dcd99d257cbec008d63e49fdf0f89a5f7c231");
    let r = refund_txs(
        &parent,
        Some(&parent),
        0,
        &receiver,
        Sequence(900),
        Sequence(950),
    );
    let direct = r.direct.expect("direct refund");
    assert_eq!(hex_of(&r.cpfp), s(v, &["cpfp_refund_tx"]));
    assert_eq!(hex_of(&direct), s(v, &["direct_refund_tx"]));
    assert_eq!(
        hex_of(&r.direct_from_cpfp),
        s(v, &["direct_from_cpfp_refund_tx"])
    );
    let prevouts = [parent.output[0].clone()];
    assert_eq!(
        sighash_hex(&r.cpfp, 0, &prevouts),
        s(v, &["cpfp_refund_sighash"])
    );
    assert_eq!(
        sighash_hex(&direct, 0, &prevouts),
        s(v, &["direct_refund_sighash"])
    );
    assert_eq!(
        sighash_hex(&r.direct_from_cpfp, 0, &prevouts),
        s(v, &["direct_from_cpfp_refund_sighash"])
    );
}

/// Initial-timelock refunds from PREV_TX with no direct node tx (spark-vectors §1.8).
fn check_initial_refunds(key: &str, seq: Sequence, direct_seq: Sequence) {
    let d = json(DERIVED_JSON);
    let v = &d[key];
    let parent = raw("PREV_TX");
    let receiver = pk("03ef261da8259f5ea86abe1b7d658ebd13fe2b2ce2418dabe854ccec67bdb9ba87");
    let r = refund_txs(&parent, None, 0, &receiver, seq, direct_seq);
    assert!(r.direct.is_none());
    assert_eq!(hex_of(&r.cpfp), s(v, &["cpfp_refund_tx"]), "{key}");
    assert_eq!(
        hex_of(&r.direct_from_cpfp),
        s(v, &["direct_from_cpfp_refund_tx"]),
        "{key}"
    );
    assert_eq!(
        r.cpfp.compute_txid().to_string(),
        s(v, &["cpfp_refund_txid"])
    );
    assert_eq!(
        r.direct_from_cpfp.compute_txid().to_string(),
        s(v, &["direct_from_cpfp_refund_txid"])
    );
    let prevouts = [parent.output[0].clone()];
    assert_eq!(
        sighash_hex(&r.cpfp, 0, &prevouts),
        s(v, &["cpfp_refund_sighash"])
    );
    assert_eq!(
        sighash_hex(&r.direct_from_cpfp, 0, &prevouts),
        s(v, &["direct_from_cpfp_refund_sighash"])
    );
}

#[test]
fn derived_initial_refunds_with_bit_30() {
    // Oct-2025 JS: INITIAL_SEQUENCE carries bit 30; direct_of keeps the upper bits.
    let seq = Sequence(0x4000_07d0);
    assert_eq!(timelock::direct_of(seq), Sequence(0x4000_0802));
    check_initial_refunds(
        "initial_refunds_oct2025_bit30",
        seq,
        timelock::direct_of(seq),
    );
}

#[test]
fn derived_initial_refunds_without_bit_30() {
    let (seq, direct_seq) = initial_refund_sequences();
    check_initial_refunds("initial_refunds_feb2026_nobit30", seq, direct_seq);
}

#[test]
fn derived_refunds_on_512_sat_leaf_apply_no_fee() {
    let d = json(DERIVED_JSON);
    let v = &d["refunds_on_real_node_512sat"];
    let node = raw("HTLC_NODE_TX");
    let receiver = pk("028c094a432d46a0ac95349d792c2e3730bd60c29188db716f56a99e39b95338b4");
    let r = refund_txs(&node, None, 0, &receiver, Sequence(1800), Sequence(1850));
    assert_eq!(r.direct_from_cpfp.output[0].value, Amount::from_sat(512));
    assert_eq!(hex_of(&r.cpfp), s(v, &["cpfp_refund_tx"]));
    assert_eq!(
        hex_of(&r.direct_from_cpfp),
        s(v, &["direct_from_cpfp_refund_tx"])
    );
    let prevouts = [node.output[0].clone()];
    assert_eq!(
        sighash_hex(&r.cpfp, 0, &prevouts),
        s(v, &["cpfp_refund_sighash"])
    );
    assert_eq!(
        sighash_hex(&r.direct_from_cpfp, 0, &prevouts),
        s(v, &["direct_from_cpfp_refund_sighash"])
    );
}

#[test]
fn derived_connector_refunds() {
    // Connector refund = refund template + connector outpoint as input[1], sequence 0xffffffff.
    let d = json(DERIVED_JSON);
    let v = &d["connector_refunds"];
    let node = raw("PREV_TX");
    let receiver = pk("03ef261da8259f5ea86abe1b7d658ebd13fe2b2ce2418dabe854ccec67bdb9ba87");
    let r = refund_txs(
        &node,
        None,
        0,
        &receiver,
        Sequence(0x4000_076c),
        Sequence(0x4000_079e),
    );
    let connector = OutPoint {
        txid: Txid::from_byte_array([0x22; 32]),
        vout: 0,
    };
    let connector_prevout = TxOut {
        value: Amount::from_sat(330),
        script_pubkey: ScriptBuf::from_hex(s(v, &["connector_prevout", "script_pubkey"]))
            .expect("script"),
    };
    let prevouts = [node.output[0].clone(), connector_prevout];
    for (name, mut t) in [("cpfp", r.cpfp), ("direct_from_cpfp", r.direct_from_cpfp)] {
        t.input.push(TxIn {
            previous_output: connector,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        });
        assert_eq!(hex_of(&t), s(v, &["txs", name, "tx"]), "{name}");
        assert_eq!(t.compute_txid().to_string(), s(v, &["txs", name, "txid"]));
        assert_eq!(
            sighash_hex(&t, 0, &prevouts),
            s(v, &["txs", name, "sighash_input0"])
        );
        assert_eq!(
            sighash_hex(&t, 1, &prevouts),
            s(v, &["txs", name, "sighash_input1"])
        );
    }
}

#[test]
fn derived_htlc_sighashes() {
    // Only the sighash function is under test here: the HTLC builder lives elsewhere.
    let d = json(DERIVED_JSON);
    let basic = tx(s(&d, &["htlc_cpfp_basic", "tx"]));
    assert_eq!(
        sighash_hex(&basic, 0, &[dummy_prev().output[0].clone()]),
        s(&d, &["htlc_cpfp_basic", "sighash"])
    );
    let prev = tx(s(&d, &["htlc_direct", "prev_tx"]));
    let direct = tx(s(&d, &["htlc_direct", "tx"]));
    assert_eq!(direct.input[0].previous_output.txid, prev.compute_txid());
    assert_eq!(
        sighash_hex(&direct, 0, &[prev.output[0].clone()]),
        s(&d, &["htlc_direct", "sighash"])
    );
}

/// The real signed CPFP leaf node tx is exactly our node template over its own output script.
#[test]
fn real_htlc_node_tx_matches_node_template() {
    let real = raw("HTLC_NODE_TX");
    let pair = node_txs(
        real.input[0].previous_output,
        &real.output[0],
        real.input[0].sequence,
        Sequence(0x4000_0802),
    );
    assert_eq!(compare_transactions(&pair.cpfp, &real), Ok(()));
    assert_eq!(
        hex_of(&pair.cpfp),
        s(
            &json(TX_JSON),
            &["raw_transactions", "HTLC_NODE_TX", "no_witness_hex"]
        )
    );
    assert_eq!(
        pair.cpfp.compute_txid().to_string(),
        "ffccdadd379ed3044da26548e3731d0c314efef5175fa186a9d4288a3b19b9d4"
    );
}

/// Real signed refund (1.3): template matches on every field but the unknown receiver key, the
/// sighash matches, and the witness signature verifies against the node output key.
#[test]
fn real_htlc_refund_tx_matches_refund_template_and_signature() {
    let j = json(TX_JSON);
    let node = raw("HTLC_NODE_TX");
    let real = raw("HTLC_REFUND_TX");
    let any_receiver = pk("028c094a432d46a0ac95349d792c2e3730bd60c29188db716f56a99e39b95338b4");
    let mut expected = refund_txs(
        &node,
        None,
        0,
        &any_receiver,
        Sequence(1900),
        Sequence(1950),
    )
    .cpfp;
    let mismatch = compare_transactions(&expected, &real).expect_err("receiver key differs");
    assert_eq!(mismatch.field, "output[0].script_pubkey");
    expected.output[0].script_pubkey = real.output[0].script_pubkey.clone();
    assert_eq!(compare_transactions(&expected, &real), Ok(()));
    assert_eq!(
        hex_of(&expected),
        s(
            &j,
            &["raw_transactions", "HTLC_REFUND_TX", "no_witness_hex"]
        )
    );

    let prevouts = [node.output[0].clone()];
    let sighash = key_spend_sighash(&real, 0, &prevouts).expect("sighash");
    assert_eq!(
        hex::encode(sighash),
        s(
            &j,
            &[
                "raw_transactions",
                "HTLC_REFUND_TX",
                "keypath_sighash_vs_HTLC_NODE_TX_out0"
            ]
        )
    );
    assert_key_path_signature_verifies(&real, &node.output[0], sighash);
}

/// The Go-asserted HTLC tx (1.1): its key-path sighash and real signature.
#[test]
fn real_htlc_expected_sighash_and_signature() {
    let j = json(TX_JSON);
    let node = raw("HTLC_NODE_TX");
    let htlc = tx(s(&j, &["htlc_vector", "expected_tx_with_witness_hex"]));
    assert_eq!(
        hex_of(&htlc),
        s(&j, &["raw_transactions", "HTLC_EXPECTED", "raw_hex"])
    );
    let sighash = key_spend_sighash(&htlc, 0, &[node.output[0].clone()]).expect("sighash");
    assert_eq!(
        hex::encode(sighash),
        s(
            &j,
            &[
                "raw_transactions",
                "HTLC_EXPECTED",
                "keypath_sighash_vs_HTLC_NODE_TX_out0"
            ]
        )
    );
    assert_key_path_signature_verifies(&htlc, &node.output[0], sighash);
}

fn assert_key_path_signature_verifies(t: &Transaction, prevout: &TxOut, sighash: [u8; 32]) {
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let key = XOnlyPublicKey::from_slice(&prevout.script_pubkey.as_bytes()[2..]).expect("p2tr key");
    let sig =
        schnorr::Signature::from_slice(t.input[0].witness.nth(0).expect("witness")).expect("sig");
    assert!(secp
        .verify_schnorr(&sig, &Message::from_digest(sighash), &key)
        .is_ok());
    // And a flipped sighash bit must not verify: the check can fail.
    let mut bad = sighash;
    bad[0] ^= 1;
    assert!(secp
        .verify_schnorr(&sig, &Message::from_digest(bad), &key)
        .is_err());
}

/// FINALIZE_EXAMPLE (1.4) and KEYTWEAK_NODE (1.5) have the CPFP shape: full value + anchor.
#[test]
fn real_fixtures_have_the_cpfp_shape() {
    for name in ["FINALIZE_EXAMPLE", "KEYTWEAK_NODE", "HTLC_REFUND_TX"] {
        let real = raw(name);
        let shaped = node_txs(
            real.input[0].previous_output,
            &real.output[0],
            real.input[0].sequence,
            Sequence(0),
        )
        .cpfp;
        assert_eq!(compare_transactions(&shaped, &real), Ok(()), "{name}");
        assert_eq!(real.output[1], anchor_output(), "{name}");
    }
}

#[test]
fn upstream_sighash_vector() {
    let j = json(TX_JSON);
    let v = &j["sighash_vector"];
    let prev = tx(s(v, &["prev_tx_hex"]));
    let mut spend = tx(s(v, &["unsigned_spend_tx_hex"]));
    assert_eq!(
        spend.input[0].previous_output,
        OutPoint {
            txid: prev.compute_txid(),
            vout: 0
        }
    );
    assert_eq!(spend.output[0].value, Amount::from_sat(70_000));
    assert_eq!(
        spend.compute_txid().to_string(),
        s(v, &["unsigned_spend_txid"])
    );
    let prevouts = [prev.output[0].clone()];
    assert_eq!(
        sighash_hex(&spend, 0, &prevouts),
        s(v, &["expected_sighash"])
    );
    spend.version = bitcoin::transaction::Version(3);
    assert_eq!(
        sighash_hex(&spend, 0, &prevouts),
        s(v, &["note_same_tx_version_3_sighash"])
    );
}

#[test]
fn raw_transactions_round_trip() {
    let j = json(TX_JSON);
    let raws = j["raw_transactions"].as_object().expect("object");
    for (name, v) in raws {
        let bytes = hex::decode(s(v, &["raw_hex"])).expect("hex");
        if name == "MALICIOUS" {
            assert!(deserialize::<Transaction>(&bytes).is_err());
            continue;
        }
        let t: Transaction = deserialize(&bytes).expect(name);
        assert_eq!(serialize(&t), bytes, "{name}");
        assert_eq!(t.compute_txid().to_string(), s(v, &["txid"]), "{name}");
        assert_eq!(t.compute_wtxid().to_string(), s(v, &["wtxid"]), "{name}");
        let mut stripped = t.clone();
        stripped.input.iter_mut().for_each(|i| i.witness.clear());
        assert_eq!(hex_of(&stripped), s(v, &["no_witness_hex"]), "{name}");
    }
}

#[test]
fn p2tr_key_path_scripts_and_addresses() {
    let a = json(ADDRESS_JSON);
    let mut count = 0;
    for v in a["p2tr_keypath"].as_array().expect("array") {
        let script = p2tr_script(&pk(s(v, &["internal_pubkey"])));
        assert_eq!(script.to_hex_string(), s(v, &["script_pubkey"]));
        let network = network(s(v, &["network"]));
        let address = Address::from_script(&script, network).expect("address");
        assert_eq!(address.to_string(), s(v, &["address"]));
        // The 33-byte output key's x coordinate is the witness program.
        assert_eq!(
            &s(v, &["bip341_output_key_33b"])[2..],
            &s(v, &["script_pubkey"])[4..]
        );
        count += 1;
    }
    for v in a["p2tr_from_script_pubkey"].as_array().expect("array") {
        let script = ScriptBuf::from_hex(s(v, &["script_pubkey"])).expect("script");
        let address = Address::from_script(&script, network(s(v, &["network"]))).expect("address");
        assert_eq!(address.to_string(), s(v, &["address"]));
        count += 1;
    }
    assert_eq!(count, 7);
}

fn network(name: &str) -> Network {
    match name {
        "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "regtest" => Network::Regtest,
        other => panic!("unknown network {other}"),
    }
}

#[test]
fn anchor_script_vector() {
    let j = json(TX_JSON);
    assert_eq!(
        anchor_output().script_pubkey.to_hex_string(),
        s(&j, &["scripts", "p2a_anchor_output", "script_pubkey"])
    );
    assert_eq!(j["scripts"]["p2a_anchor_output"]["value_sat"], 0);
}

#[test]
fn next_sequence_table() {
    let j = json(SEQUENCE_JSON);
    let cases = j["next_sequence_table"]["cases"].as_array().expect("array");
    assert_eq!(cases.len(), 9);
    for case in cases {
        let name = s(case, &["name"]);
        let curr = Sequence(parse_seq(&case["curr"]));
        let got = next_sequences(curr, 0);
        if case.get("error").is_some() {
            assert!(
                matches!(
                    got,
                    Err(TimelockError::Exhausted {
                        floor: 0,
                        interval: 100,
                        ..
                    })
                ),
                "{name}: {got:?}"
            );
        } else {
            let want = (
                Sequence(parse_seq(&case["next"])),
                Sequence(parse_seq(&case["next_direct"])),
            );
            assert_eq!(got, Ok(want), "{name}");
        }
    }
}

#[test]
fn sequence_validity_vectors() {
    assert_eq!(
        validate_sequence(Sequence(0x8000_03e8)),
        Err(TimelockError::Disabled(0x8000_03e8))
    );
    assert_eq!(
        validate_sequence(Sequence(0x0040_03e8)),
        Err(TimelockError::TimeBased(0x0040_03e8))
    );
    assert_eq!(validate_sequence(Sequence(1000)), Ok(()));
    assert_eq!(validate_sequence(Sequence(0x4000_03e8)), Ok(()));
    // Zero timelock: the low 16 bits only.
    for zero in [0, 0x4000_0000] {
        assert_eq!(timelock::blocks(Sequence(zero)).0, 0);
    }
    for nonzero in [1, 1000] {
        assert_ne!(timelock::blocks(Sequence(nonzero)).0, 0);
    }
}

#[test]
fn maybe_apply_fee_vectors() {
    let j = json(SEQUENCE_JSON);
    let cases = j["max_apply_fee"]["cases"].as_object().expect("object");
    assert_eq!(cases.len(), 4);
    for (input, want) in cases {
        let input: u64 = input.parse().expect("number");
        let want = want.as_u64().expect("number");
        assert_eq!(
            maybe_apply_fee(Amount::from_sat(input)),
            Amount::from_sat(want),
            "{input}"
        );
    }
}
