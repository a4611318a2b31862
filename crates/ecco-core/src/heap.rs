//! The heap that standard collections take, as the memory estimates of
//! [`Capability::footprint`](crate::Capability::footprint) and
//! [`decoded::Cost`](crate::decoded::Cost) count it.

use std::mem::size_of;

/// The heap of a B-tree map or set of `entries` entries of `entry` bytes
/// (key and value, as laid out in a node), its leaves holding `per_leaf`
/// entries on average. Nodes have room for 11 entries each and are
/// allocated whole, so a small map takes a whole node. Built by insertion,
/// nodes are about three quarters full (8 per leaf); they are never less
/// than 5 full, save the root, whatever the order of insertion.
pub(crate) fn tree(entries: usize, entry: usize, per_leaf: usize) -> usize {
    const CAPACITY: usize = 11;
    // Parent pointer, index and length.
    const HEADER: usize = 16;
    if entries == 0 {
        return 0;
    }
    let per_leaf = per_leaf.clamp(2, CAPACITY);
    let leaves = entries.div_ceil(per_leaf);
    // Internal nodes, with one more edge than entries each.
    let internal = if leaves > 1 {
        leaves.div_ceil(per_leaf - 1)
    } else {
        0
    };
    (leaves + internal) * (HEADER + CAPACITY * entry)
        + internal * (CAPACITY + 1) * size_of::<usize>()
}
