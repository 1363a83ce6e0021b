//! Real MLS for the relay's tests: a group and an external commit built with openmls, the
//! only MLS messages the relay reads (a public room's GroupInfo and a joiner's commit).

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use super::Identity;

/// An account's MLS side: its identity key as the signature key, its handle as the
/// credential.
pub struct MlsUser {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub credential: CredentialWithKey,
}

const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;

impl MlsUser {
    /// `identity`'s key under the credential `handle` (another account's handle, for an
    /// impostor).
    pub fn new(identity: &Identity, handle: &str) -> Self {
        let public = identity.key.verifying_key().to_bytes().to_vec();
        let signer = SignatureKeyPair::from_raw(
            SignatureScheme::ED25519,
            identity.key.to_bytes().to_vec(),
            public.clone(),
        );
        MlsUser {
            provider: OpenMlsRustCrypto::default(),
            signer,
            credential: CredentialWithKey {
                credential: BasicCredential::new(handle.as_bytes().to_vec()).into(),
                signature_key: public.into(),
            },
        }
    }

    /// A new group with id `room`.
    pub fn create_group(&self, room: &[u8; 16]) -> MlsGroup {
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(SUITE)
            .use_ratchet_tree_extension(true)
            .build();
        MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            GroupId::from_slice(room),
            self.credential.clone(),
        )
        .expect("group created")
    }

    /// The group's GroupInfo with its ratchet tree and external public key, as members
    /// publish it.
    pub fn group_info(&self, group: &MlsGroup) -> Vec<u8> {
        group
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .expect("group info exported")
            .to_bytes()
            .expect("group info encoded")
    }

    /// An external commit joining the group of `group_info`, and the joiner's group.
    pub fn external_commit(&self, group_info: &[u8]) -> (MlsGroup, Vec<u8>) {
        use openmls::prelude::tls_codec::Deserialize as _;
        let MlsMessageBodyIn::GroupInfo(info) = MlsMessageIn::tls_deserialize_exact(group_info)
            .expect("group info decodes")
            .extract()
        else {
            panic!("not a group info");
        };
        let (group, bundle) = MlsGroup::external_commit_builder()
            .build_group(&self.provider, info, self.credential.clone())
            .expect("external commit group")
            .load_psks(self.provider.storage())
            .expect("no psks")
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .expect("external commit built")
            .finalize(&self.provider)
            .expect("external commit finalized");
        (
            group,
            bundle.into_commit().to_bytes().expect("commit encoded"),
        )
    }
}

impl MlsUser {
    /// `n` one-use KeyPackages and, if asked, a last-resort one, as TLS-codec bytes,
    /// valid from `not_before` to `not_after` (seconds since the Unix epoch; `None`: the
    /// openmls default, valid now).
    pub fn key_packages(
        &self,
        n: usize,
        last_resort: bool,
        lifetime: Option<(u64, u64)>,
    ) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        use openmls::prelude::tls_codec::Serialize as _;
        let make = |resort: bool| {
            let mut builder = KeyPackage::builder().leaf_node_capabilities(Capabilities::new(
                None,
                Some(&[SUITE]),
                Some(&[ExtensionType::LastResort]),
                None,
                None,
            ));
            if let Some((not_before, not_after)) = lifetime {
                builder = builder.key_package_lifetime(Lifetime::init(not_before, not_after));
            }
            if resort {
                builder = builder.mark_as_last_resort();
            }
            builder
                .build(SUITE, &self.provider, &self.signer, self.credential.clone())
                .expect("key package built")
                .key_package()
                .tls_serialize_detached()
                .expect("key package encoded")
        };
        let packages = (0..n).map(|_| make(false)).collect();
        (packages, last_resort.then(|| make(true)))
    }
}
