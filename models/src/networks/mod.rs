//! Every network this crate defines, by name: the command line and the benches pick one
//! with [`by_name`].
//!
//! Adding a network is one file here (a struct implementing [`Module`](crate::layers::Module)
//! and [`Model`]), its `mod` line and one row of [`NETWORKS`].

mod net;

pub use net::Net;

use autograd::Device;

use crate::error::{Error, Result};
use crate::model::Model;

/// A registered network: its name and how to build it.
pub struct Network {
    pub name: &'static str,
    /// One line for listings.
    pub about: &'static str,
    /// The network with its initial weights drawn from `seed`, on `device`.
    pub build: fn(seed: u64, device: Device) -> autograd::Result<Box<dyn Model>>,
}

/// The registry, in the order listings show it.
pub const NETWORKS: &[Network] = &[Network {
    name: Net::NAME,
    about: "the course notebook's CNN: five conv blocks, 8192-1024-128-10, 10.9M parameters",
    build: |seed, device| Ok(Box::new(Net::new(seed, device)?)),
}];

/// The registered names, in order.
pub fn names() -> Vec<&'static str> {
    NETWORKS.iter().map(|n| n.name).collect()
}

/// Builds the network registered as `name`, or says which names exist.
pub fn by_name(name: &str, seed: u64, device: Device) -> Result<Box<dyn Model>> {
    let network = NETWORKS
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: names().join(", "),
        })?;
    Ok((network.build)(seed, device)?)
}
