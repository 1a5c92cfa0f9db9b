//! Kernel parameter lists read from the `.cu` sources, so that a launch whose arguments
//! do not fit the kernel is an error naming both instead of a fault on the device.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::{Arg, KERNEL_NAMES};
use crate::{Error, Result};

/// The C type of one kernel parameter, in the terms of [`Arg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// Any pointer (`const float*`, `double*`, `const unsigned int*`, ...).
    Ptr,
    I32,
    U32,
    U64,
    F32,
    F64,
}

impl Arg {
    /// The parameter type this argument fills.
    pub fn param(&self) -> Param {
        match self {
            Arg::Ptr(_) => Param::Ptr,
            Arg::I32(_) => Param::I32,
            Arg::U32(_) => Param::U32,
            Arg::U64(_) => Param::U64,
            Arg::F32(_) => Param::F32,
            Arg::F64(_) => Param::F64,
        }
    }
}

/// The parameter list of `extern "C" __global__ void name(...)` in `source`, or `None`
/// when there is no such kernel or a parameter type is not one of [`Param`]'s.
pub fn kernel_params(source: &str, name: &str) -> Option<Vec<Param>> {
    let head = format!("extern \"C\" __global__ void {name}(");
    let start = source.find(&head)? + head.len();
    let end = start + source[start..].find(')')?;
    let list = source[start..end].trim();
    if list.is_empty() {
        return Some(Vec::new());
    }
    list.split(',')
        .map(|param| {
            let param = param.trim();
            if param.contains('*') {
                return Some(Param::Ptr);
            }
            // Drop the parameter's name: the type is every word before it.
            let words: Vec<&str> = param.split_whitespace().collect();
            let (_, ty) = words.split_last()?;
            match ty.join(" ").trim_start_matches("const ") {
                "int" => Some(Param::I32),
                "unsigned int" | "unsigned" => Some(Param::U32),
                "unsigned long long" => Some(Param::U64),
                "float" => Some(Param::F32),
                "double" => Some(Param::F64),
                _ => None,
            }
        })
        .collect()
}

/// The parameter lists of every kernel in [`KERNEL_NAMES`], parsed once.
fn signatures() -> &'static HashMap<&'static str, Vec<Param>> {
    static SIGNATURES: OnceLock<HashMap<&'static str, Vec<Param>>> = OnceLock::new();
    SIGNATURES.get_or_init(|| {
        let mut all = HashMap::new();
        for &(file, names) in KERNEL_NAMES {
            let Some(source) = super::kernel_source(file) else {
                continue;
            };
            for &name in names {
                if let Some(params) = kernel_params(source, name) {
                    all.insert(name, params);
                }
            }
        }
        all
    })
}

/// Checks `args` against the declared parameters of kernel `name` of `file`.
pub fn check_args(op: &'static str, file: &str, name: &str, args: &[Arg]) -> Result<()> {
    let params = signatures()
        .get(name)
        .ok_or_else(|| Error::Cuda(format!("{op}: no kernel {name} in {file}")))?;
    let given: Vec<Param> = args.iter().map(Arg::param).collect();
    if given == *params {
        Ok(())
    } else {
        Err(Error::Cuda(format!(
            "{op}: the arguments {given:?} do not fit {name} ({file}), which takes {params:?}"
        )))
    }
}
