//! Addresses a wallet shows: the P2TR address of a key (deposit addresses) and the Spark address
//! of an identity key (bech32m of the `SparkAddress` protobuf, SDK 0.8.8 `encodeSparkAddress`).
use bitcoin::bech32::{self, Bech32m, Hrp};
use bitcoin::secp256k1::PublicKey;

/// The SDK's networks (`Network` enum). `Local` is a regtest chain with its own Spark prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SparkNetwork {
    Mainnet,
    Testnet,
    Signet,
    Regtest,
    Local,
}

impl SparkNetwork {
    pub const ALL: [SparkNetwork; 5] = [
        SparkNetwork::Mainnet,
        SparkNetwork::Testnet,
        SparkNetwork::Signet,
        SparkNetwork::Regtest,
        SparkNetwork::Local,
    ];

    /// The bitcoin network whose address format the SDK uses (signet shares testnet's `tb`).
    pub fn bitcoin(self) -> bitcoin::Network {
        match self {
            SparkNetwork::Mainnet => bitcoin::Network::Bitcoin,
            SparkNetwork::Testnet => bitcoin::Network::Testnet,
            SparkNetwork::Signet => bitcoin::Network::Signet,
            SparkNetwork::Regtest | SparkNetwork::Local => bitcoin::Network::Regtest,
        }
    }

    /// Human-readable part of a Spark address.
    pub fn spark_hrp(self) -> &'static str {
        match self {
            SparkNetwork::Mainnet => "spark",
            SparkNetwork::Testnet => "sparkt",
            SparkNetwork::Regtest => "sparkrt",
            SparkNetwork::Signet => "sparks",
            SparkNetwork::Local => "sparkl",
        }
    }

    /// Human-readable part of a legacy (pre-2025) Spark address.
    pub fn legacy_spark_hrp(self) -> &'static str {
        match self {
            SparkNetwork::Mainnet => "sp",
            SparkNetwork::Testnet => "spt",
            SparkNetwork::Regtest => "sprt",
            SparkNetwork::Signet => "sps",
            SparkNetwork::Local => "spl",
        }
    }
}

/// Key-path-only P2TR address of `pk` (BIP86 tweak), as `getP2TRAddressFromPublicKey`.
pub fn p2tr_address(pk: &PublicKey, network: SparkNetwork) -> String {
    let (internal, _) = pk.x_only_public_key();
    bitcoin::Address::p2tr(crate::crypto::secp(), internal, None, network.bitcoin()).to_string()
}

/// The Spark address of an identity key: bech32m(hrp, protobuf `SparkAddress{1: identity_public_key}`).
pub fn spark_address(identity: &PublicKey, network: SparkNetwork) -> String {
    encode_with_hrp(identity, network.spark_hrp())
}

/// The same payload under the legacy prefix (`sp`, `spt`, …), which SDKs still decode.
pub fn legacy_spark_address(identity: &PublicKey, network: SparkNetwork) -> String {
    encode_with_hrp(identity, network.legacy_spark_hrp())
}

fn encode_with_hrp(identity: &PublicKey, hrp: &str) -> String {
    // Protobuf field 1 (wire type 2): tag 0x0a, length 33, the compressed key.
    let key = identity.serialize();
    let mut payload = Vec::with_capacity(2 + key.len());
    payload.extend_from_slice(&[0x0a, key.len() as u8]);
    payload.extend_from_slice(&key);
    let hrp = Hrp::parse(hrp).expect("invariant: the Spark prefixes are valid bech32 hrps");
    // 35 bytes → 56 data characters: far below bech32's 90-character limit.
    bech32::encode::<Bech32m>(hrp, &payload).expect("invariant: a Spark address fits bech32m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_differ_per_network() {
        let pk = PublicKey::from_slice(
            &hex::decode("0353908bac090ba741de6147a540a665537006911590f93249b2823dbe187d3213")
                .expect("hex"),
        )
        .expect("key");
        let a: Vec<String> = SparkNetwork::ALL
            .iter()
            .map(|n| spark_address(&pk, *n))
            .collect();
        assert!(a[0].starts_with("spark1"));
        assert!(a[3].starts_with("sparkrt1"));
        assert!(legacy_spark_address(&pk, SparkNetwork::Regtest).starts_with("sprt1"));
    }
}
