// Oracle side of the differential tests (tests/interop.rs): runs the official Spark SDK
// (@buildonspark/spark-sdk, pinned in package-lock.json) on cases drawn by the Rust test.
//
// Protocol: one JSON object on stdin, {"check": NAME, "cases": [...]}; one JSON array on stdout,
// one result object per case, in order. Bytes travel as lowercase hex. An SDK call that throws
// yields the string "error" for that field (the Rust side must then also refuse), so a result
// never silently disappears. This file decides nothing: every comparison is made in Rust.
import * as sdk from "@buildonspark/spark-sdk";
import { Transaction } from "@scure/btc-signer";
import { bytesToHex, hexToBytes } from "@noble/curves/utils";

const frost = sdk.getSparkFrost();
const NETWORKS = ["MAINNET", "TESTNET", "SIGNET", "REGTEST", "LOCAL"];

const txHex = (tx) => (tx ? tx.hex : null);
const hex = (bytes) => bytesToHex(bytes);

/** `f()`'s value, or "error" if the SDK throws. */
async function attempt(f) {
  try {
    return await f();
  } catch {
    return "error";
  }
}

function refundsHex(r) {
  if (r === "error") return "error";
  return {
    cpfp: txHex(r.cpfpRefundTx),
    direct: txHex(r.directRefundTx),
    direct_from_cpfp: txHex(r.directFromCpfpRefundTx),
  };
}

function nodePairHex(r) {
  if (r === "error") return "error";
  return { cpfp: txHex(r.nodeTx), direct: txHex(r.directNodeTx) };
}

function seqPair(r) {
  if (r === "error") return "error";
  return [r.nextSequence >>> 0, r.nextDirectSequence >>> 0];
}

async function txCase(c) {
  const net = sdk.Network[NETWORKS[c.network]];
  const parent = sdk.getTxFromRawTxHex(c.parent_tx);
  const receivingPubkey = hexToBytes(c.receiver);
  const out = {};

  const root = await attempt(() => sdk.createRootNodeTx(parent, c.vout, net));
  out.root_node = nodePairHex(root);
  const initial = await attempt(() => sdk.createInitialTimelockNodeTx(parent, net));
  out.initial_node = nodePairHex(initial);
  out.zero_timelock_node = nodePairHex(await attempt(() => sdk.createZeroTimelockNodeTx(parent, net)));
  const current = new Transaction({ version: 3, allowUnknownOutputs: true });
  current.addInput({ txid: new Uint8Array(32).fill(1), index: 0, sequence: c.node_seq });
  out.decremented_node = nodePairHex(
    await attempt(() => sdk.createDecrementedTimelockNodeTx(parent, current, net)),
  );

  if (initial !== "error") {
    const base = {
      nodeTx: initial.nodeTx,
      directNodeTx: initial.directNodeTx,
      receivingPubkey,
      network: net,
    };
    out.initial_refunds = refundsHex(await attempt(() => sdk.createInitialTimelockRefundTxs(base)));
    out.decremented_refunds = refundsHex(
      await attempt(() => sdk.createDecrementedTimelockRefundTxs({ ...base, sequence: c.refund_seq })),
    );
    out.current_refunds = refundsHex(
      await attempt(() => sdk.createCurrentTimelockRefundTxs({ ...base, sequence: c.refund_seq })),
    );
    const connectorOutput = { txid: hexToBytes(c.connector_txid), index: c.connector_vout };
    const connector = await attempt(() =>
      sdk.createConnectorRefundTxs({ ...base, sequence: c.refund_seq, connectorOutput }),
    );
    out.connector_refunds = refundsHex(connector);

    const htlcSeq = await attempt(() => sdk.getNextHTLCTransactionSequence(c.refund_seq));
    out.htlc_refunds =
      htlcSeq === "error"
        ? "error"
        : refundsHex(
            await attempt(() =>
              sdk.createRefundTxsForLightning({
                nodeTx: initial.nodeTx,
                directNodeTx: initial.directNodeTx,
                vout: 0,
                sequence: htlcSeq.nextSequence,
                directSequence: htlcSeq.nextDirectSequence,
                network: sdk.getNetwork(net),
                hash: hexToBytes(c.hash),
                hashLockDestinationPubkey: hexToBytes(c.hashlock_pk),
                sequenceLockDestinationPubkey: hexToBytes(c.seqlock_pk),
              }),
            ),
          );

    // Sighashes: the initial node spends parent:0, its refund spends node:0, the connector
    // refund spends node:0 and the connector (both prevouts committed).
    const parentOut = parent.getOutput(0);
    out.sighash_node = hex(sdk.getSigHashFromTx(initial.nodeTx, 0, parentOut));
    const nodeOut = initial.nodeTx.getOutput(0);
    const initialRefunds = await sdk.createInitialTimelockRefundTxs(base);
    out.sighash_refund = hex(sdk.getSigHashFromTx(initialRefunds.cpfpRefundTx, 0, nodeOut));
    if (connector !== "error") {
      const prevouts = [
        nodeOut,
        { script: hexToBytes(c.connector_script), amount: BigInt(c.connector_value) },
      ];
      out.sighash_connector = [0, 1].map((i) =>
        hex(sdk.getSigHashFromMultiInputTx(connector.cpfpRefundTx, i, prevouts)),
      );
    } else {
      out.sighash_connector = "error";
    }
  }
  if (root !== "error") {
    // A CSV-0 root node: the SDK builds no direct refund from it.
    out.zero_node_refunds = refundsHex(
      await attempt(() =>
        sdk.createInitialTimelockRefundTxs({
          nodeTx: root.nodeTx,
          directNodeTx: root.directNodeTx,
          receivingPubkey,
          network: net,
        }),
      ),
    );
  }
  out.p2tr_address = sdk.getP2TRAddressFromPublicKey(receivingPubkey, net);
  out.spark_address = sdk.encodeSparkAddress({
    identityPublicKey: c.receiver,
    network: NETWORKS[c.network],
  });
  return out;
}

async function sequenceCase(c) {
  return {
    refund: seqPair(await attempt(() => sdk.getNextTransactionSequence(c.seq))),
    node: seqPair(await attempt(() => sdk.getNextTransactionSequence(c.seq, true))),
    htlc: seqPair(await attempt(() => sdk.getNextHTLCTransactionSequence(c.seq))),
    htlc_node: seqPair(await attempt(() => sdk.getNextHTLCTransactionSequence(c.seq, true))),
  };
}

async function eciesCase(c) {
  const sdkCipher = await frost.encryptEcies(hexToBytes(c.msg), hexToBytes(c.receiver_pk));
  const ours = await attempt(async () =>
    hex(await frost.decryptEcies(hexToBytes(c.ours_cipher), hexToBytes(c.receiver_sk))),
  );
  const tampered = await attempt(async () =>
    hex(await frost.decryptEcies(hexToBytes(c.ours_cipher_tampered), hexToBytes(c.receiver_sk))),
  );
  return { sdk_cipher: hex(sdkCipher), sdk_plain_of_ours: ours, sdk_plain_of_tampered: tampered };
}

const validates = async (s) =>
  (await attempt(async () => {
    await frost.validateShare(
      hexToBytes(s.share),
      s.index,
      s.threshold,
      s.proofs.map((p) => hexToBytes(p)),
    );
    return "ok";
  })) === "ok";

async function vssCase(c) {
  const shares = await frost.splitSecretWithProofs(hexToBytes(c.secret), c.threshold, c.n);
  const sdkShares = shares.map((s) => ({
    threshold: s.threshold,
    index: s.index,
    share: hex(s.share),
    proofs: s.proofs.map(hex),
  }));
  const oursValid = [];
  for (const s of c.ours) oursValid.push(await validates(s));
  const recoverFrom = (list) =>
    attempt(async () =>
      hex(
        await frost.recoverSecret(
          list.map((s) => ({ threshold: s.threshold, index: s.index, share: hexToBytes(s.share) })),
        ),
      ),
    );
  return {
    sdk_shares: sdkShares,
    ours_valid: oursValid,
    ours_tampered_valid: await validates(c.ours_tampered),
    sdk_recovers_ours: await recoverFrom(c.ours_subset),
    sdk_recovers_own: await recoverFrom(sdkShares.slice(0, c.threshold)),
  };
}

const commitment = (c) => ({ hiding: hexToBytes(c.hiding), binding: hexToBytes(c.binding) });
const mapValues = (obj, f) => Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, f(v)]));

async function frostCase(c) {
  const statechainCommitments = mapValues(c.operator_commitments, commitment);
  const statechainPublicKeys = mapValues(c.operator_public_shares, hexToBytes);
  const statechainSignatures = mapValues(c.operator_shares, hexToBytes);
  const adaptorPubKey = c.adaptor ? hexToBytes(c.adaptor) : undefined;
  const userShare = await attempt(async () =>
    hex(
      await frost.signFrost({
        message: hexToBytes(c.message),
        keyPackage: {
          secretKey: hexToBytes(c.user_sk),
          publicKey: hexToBytes(c.user_pk),
          verifyingKey: hexToBytes(c.verifying_key),
        },
        nonce: { hiding: hexToBytes(c.user_nonce.hiding), binding: hexToBytes(c.user_nonce.binding) },
        selfCommitment: commitment(c.user_commitment),
        statechainCommitments,
        adaptorPubKey,
      }),
    ),
  );
  const aggregate = (selfSignature, signatures = statechainSignatures) =>
    attempt(async () =>
      hex(
        await frost.aggregateFrost({
          message: hexToBytes(c.message),
          statechainCommitments,
          selfCommitment: commitment(c.user_commitment),
          statechainSignatures: signatures,
          selfSignature: hexToBytes(selfSignature),
          statechainPublicKeys,
          selfPublicKey: hexToBytes(c.user_pk),
          verifyingKey: hexToBytes(c.verifying_key),
          adaptorPubKey,
        }),
      ),
    );
  return {
    sdk_user_share: userShare,
    sdk_aggregate_with_sdk_user: userShare === "error" ? "error" : await aggregate(userShare),
    sdk_aggregate_of_ours: await aggregate(c.our_user_share),
    sdk_aggregate_tampered: await aggregate(
      c.our_user_share,
      mapValues(c.operator_shares_tampered, hexToBytes),
    ),
  };
}

const CHECKS = { tx: txCase, sequence: sequenceCase, ecies: eciesCase, vss: vssCase, frost: frostCase };

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const run = CHECKS[request.check];
if (!run) {
  process.stderr.write(`unknown check ${request.check}\n`);
  process.exit(2);
}
const results = [];
for (const c of request.cases) results.push(await run(c));
process.stdout.write(JSON.stringify(results));
