//! Connected sets of linked items (union-find): how duplicate review groups images, both
//! on the server (`service::images::duplicates`) and in the CLI's `imgsearch dedup`
//! (`remote::dedup`), so an edited copy of an edited copy joins its original.
//!
//! Not here: finding the links (similarity searches) or what a group is shown as.

use std::collections::HashMap;

/// The connected sets of 2 or more among nodes `0..n` under `links`, each in ascending node
/// order, sets ordered by their smallest node (callers number nodes oldest first). Links
/// naming a node `>= n` are ignored.
pub fn connected_sets(
    n: usize,
    links: impl IntoIterator<Item = (usize, usize)>,
) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (a, b) in links {
        if a >= n || b >= n {
            continue;
        }
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        // The smaller root wins, so every set's root is its smallest node.
        parent[ra.max(rb)] = ra.min(rb);
    }
    let mut sets: Vec<Vec<usize>> = Vec::new();
    let mut slot: HashMap<usize, usize> = HashMap::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        let s = *slot.entry(r).or_insert_with(|| {
            sets.push(Vec::new());
            sets.len() - 1
        });
        sets[s].push(i);
    }
    sets.retain(|s| s.len() > 1);
    sets
}

#[cfg(test)]
mod tests {
    use super::connected_sets;

    #[test]
    fn sets_join_chains_and_leave_singles_out() {
        let sets = connected_sets(6, [(3, 0), (1, 3), (4, 2), (9, 1)]);
        assert_eq!(sets, vec![vec![0, 1, 3], vec![2, 4]]);
        assert!(connected_sets(3, []).is_empty());
        assert_eq!(connected_sets(3, [(2, 2), (2, 1)]), vec![vec![1, 2]]);
    }
}
