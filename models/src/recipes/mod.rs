//! Training recipes that go with a network: everything a run needs besides the network
//! and the data (hyper-parameters, optimizer, schedule, loss, the per-step procedure).

mod airbench94;

pub use airbench94::{Airbench94Recipe, Airbench94Trainer};
