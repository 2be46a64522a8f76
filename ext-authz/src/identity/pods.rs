//! The pod-IP index behind the Kubernetes identity source, as plain data: what a watch event
//! does to it is decided here, and tested here, without any API server.
//!
//! Rules: every `status.podIPs` entry is indexed; `hostNetwork` pods (whose IP is the node's,
//! shared by every such pod) and pods in phase `Succeeded`/`Failed` (whose IP may already be
//! reused) are not; an IP is released only by the pod (UID) that holds it, so a late delete of
//! an old pod cannot remove the new pod that got its IP; two live pods claiming one IP make it
//! ambiguous, and an ambiguous IP identifies nobody until one of them is gone.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::{Identity, Source};

/// What the index needs of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.serviceAccountName`.
    pub service_account: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Every parsed `status.podIPs` entry.
    pub ips: Vec<IpAddr>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `status.phase` is `Succeeded` or `Failed`.
    pub terminated: bool,
}

impl PodInfo {
    fn indexable(&self) -> bool {
        !self.host_network && !self.terminated && !self.uid.is_empty()
    }

    fn identity(&self) -> Identity {
        Identity {
            name: format!("{}/{}", self.namespace, self.service_account),
            source: Source::PodIp,
            namespace: Some(self.namespace.clone()),
            service_account: Some(self.service_account.clone()),
            labels: self.labels.clone(),
            pod: Some(format!("{}/{}", self.namespace, self.name)),
            pod_uid: Some(self.uid.clone()),
            ..Identity::default()
        }
    }
}

/// Why an IP identifies nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No live pod has it.
    Unknown,
    /// Two or more live pods claim it.
    Ambiguous,
}

/// IP → the pods that claim it (one, normally), plus each pod's last known state.
#[derive(Debug, Default, Clone)]
pub struct PodIndex {
    pods: HashMap<String, PodInfo>,
    by_ip: HashMap<IpAddr, Vec<String>>,
}

impl PodIndex {
    /// An index holding exactly `pods` (a full list).
    pub fn from_list(pods: impl IntoIterator<Item = PodInfo>) -> Self {
        let mut index = Self::default();
        for pod in pods {
            index.apply(pod);
        }
        index
    }

    /// A pod was added or changed.
    pub fn apply(&mut self, pod: PodInfo) {
        self.remove_uid(&pod.uid);
        if !pod.indexable() {
            return;
        }
        for ip in &pod.ips {
            self.by_ip.entry(*ip).or_default().push(pod.uid.clone());
        }
        self.pods.insert(pod.uid.clone(), pod);
    }

    /// A pod was deleted: only its own claims go.
    pub fn delete(&mut self, pod: &PodInfo) {
        self.remove_uid(&pod.uid);
    }

    fn remove_uid(&mut self, uid: &str) {
        let Some(old) = self.pods.remove(uid) else {
            return;
        };
        for ip in old.ips {
            if let Some(uids) = self.by_ip.get_mut(&ip) {
                uids.retain(|u| u != uid);
                if uids.is_empty() {
                    self.by_ip.remove(&ip);
                }
            }
        }
    }

    /// The identity of the one live pod with `ip`.
    pub fn resolve(&self, ip: IpAddr) -> Result<Identity, Miss> {
        match self.by_ip.get(&ip).map(Vec::as_slice) {
            None | Some([]) => Err(Miss::Unknown),
            Some([uid]) => self
                .pods
                .get(uid)
                .map(PodInfo::identity)
                .ok_or(Miss::Unknown),
            Some(_) => Err(Miss::Ambiguous),
        }
    }

    /// Number of indexed pods.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no pod is indexed.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, sa: &str, ip: &str) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            namespace: "team-a".into(),
            name: format!("pod-{uid}"),
            service_account: sa.into(),
            ips: vec![ip.parse().unwrap()],
            ..PodInfo::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn indexes_every_pod_ip_and_names_the_service_account() {
        let mut p = pod("u1", "uploader", "10.0.0.1");
        p.ips.push(ip("fd00::1"));
        p.labels.insert("app".into(), "ingest".into());
        let index = PodIndex::from_list([p]);
        for addr in ["10.0.0.1", "fd00::1"] {
            let id = index.resolve(ip(addr)).unwrap();
            assert_eq!(id.name, "team-a/uploader");
            assert_eq!(id.labels["app"], "ingest");
            assert_eq!(id.pod_uid.as_deref(), Some("u1"));
        }
        assert_eq!(index.resolve(ip("10.0.0.2")), Err(Miss::Unknown));
    }

    #[test]
    fn host_network_and_finished_pods_identify_nobody() {
        let mut host = pod("u1", "node-agent", "10.0.0.1");
        host.host_network = true;
        let mut done = pod("u2", "job", "10.0.0.2");
        done.terminated = true;
        let index = PodIndex::from_list([host, done]);
        assert_eq!(index.resolve(ip("10.0.0.1")), Err(Miss::Unknown));
        assert_eq!(index.resolve(ip("10.0.0.2")), Err(Miss::Unknown));
        assert!(index.is_empty());
    }

    #[test]
    fn a_late_delete_of_the_old_pod_keeps_the_new_pod_on_a_reused_ip() {
        let mut index = PodIndex::default();
        let old = pod("old", "a", "10.0.0.9");
        index.apply(old.clone());
        let mut finished = old.clone();
        finished.terminated = true;
        index.apply(finished);
        index.apply(pod("new", "b", "10.0.0.9"));
        index.delete(&old);
        assert_eq!(index.resolve(ip("10.0.0.9")).unwrap().name, "team-a/b");
    }

    #[test]
    fn two_live_pods_on_one_ip_are_ambiguous_until_one_is_gone() {
        let mut index = PodIndex::default();
        let first = pod("u1", "a", "10.0.0.5");
        index.apply(first.clone());
        index.apply(pod("u2", "b", "10.0.0.5"));
        assert_eq!(index.resolve(ip("10.0.0.5")), Err(Miss::Ambiguous));
        index.delete(&first);
        assert_eq!(index.resolve(ip("10.0.0.5")).unwrap().name, "team-a/b");
    }

    #[test]
    fn an_update_moves_a_pods_ip() {
        let mut index = PodIndex::default();
        index.apply(pod("u1", "a", "10.0.0.1"));
        index.apply(pod("u1", "a", "10.0.0.2"));
        assert_eq!(index.resolve(ip("10.0.0.1")), Err(Miss::Unknown));
        assert!(index.resolve(ip("10.0.0.2")).is_ok());
        assert_eq!(index.len(), 1);
    }
}
