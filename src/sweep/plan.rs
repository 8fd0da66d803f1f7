//! Sweep planning: which combinations share which work, and how much of a
//! grid is in memory at once.
//!
//! Inside one lengths group every combination reads the same shared stage
//! (`R` and the 54 cross signals). Combinations with the same (lambda,
//! decay, cutout) also share the average signal (thresholds only act on
//! it), so each such *layer key* is one lane of the layer kernel, and the
//! lanes of one kernel call share a cutout. A [`Task`] is one kernel's
//! lanes plus every combination that reads them: the unit of parallel
//! work, run over the symbols in order so each combination's portfolio is
//! summed in symbol order.

use std::collections::BTreeMap;

use crate::engine::AtcParams;

/// The parameters a lane of the layer kernel is made of.
fn layer_key(p: &AtcParams) -> (u64, u64, usize) {
    (p.lambda.to_bits(), p.decay.to_bits(), p.cutout)
}

/// One unit of parallel work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Task {
    /// Per lane, the combination (index into the planned slice) whose
    /// (lambda, decay, cutout) the lane computes. Empty for a task of
    /// invalid combinations (nothing to compute).
    pub lanes: Vec<usize>,
    /// `(combination, lane)` for every combination of the task, in order.
    pub combos: Vec<(usize, usize)>,
}

/// Groups `params` (one lengths group, in processing order) into tasks:
/// distinct layer keys of one cutout, at most `width` per task, each with
/// the combinations that read them; combinations with `valid[i] == false`
/// go to one task without lanes. (Symbols, not tasks, run in parallel.)
/// The result depends only on the arguments, and no output depends on how
/// combinations are grouped.
pub(crate) fn plan_tasks(params: &[AtcParams], valid: &[bool], width: usize) -> Vec<Task> {
    let width = width.max(1);
    // cutout → distinct keys in first-seen order, each with its combinations.
    let mut by_cutout: BTreeMap<usize, Vec<(usize, Vec<usize>)>> = BTreeMap::new();
    let mut key_slot: BTreeMap<(u64, u64, usize), (usize, usize)> = BTreeMap::new();
    let mut invalid = Vec::new();
    for (i, p) in params.iter().enumerate() {
        if !valid[i] {
            invalid.push((i, 0));
            continue;
        }
        let key = layer_key(p);
        let keys = by_cutout.entry(p.cutout).or_default();
        match key_slot.get(&key) {
            Some(&(_, slot)) => keys[slot].1.push(i),
            None => {
                key_slot.insert(key, (p.cutout, keys.len()));
                keys.push((i, vec![i]));
            }
        }
    }
    let mut tasks = Vec::new();
    for keys in by_cutout.into_values() {
        for group in keys.chunks(width) {
            let mut combos = Vec::new();
            for (lane, (_, members)) in group.iter().enumerate() {
                combos.extend(members.iter().map(|&c| (c, lane)));
            }
            combos.sort_unstable();
            tasks.push(Task {
                lanes: group.iter().map(|(rep, _)| *rep).collect(),
                combos,
            });
        }
    }
    if !invalid.is_empty() {
        tasks.push(Task {
            lanes: Vec::new(),
            combos: invalid,
        });
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lambda: f64, decay: f64, cutout: usize, long: f64) -> AtcParams {
        AtcParams {
            lambda,
            decay,
            cutout,
            long_threshold: long,
            ..AtcParams::default()
        }
    }

    /// Every combination appears exactly once, reads a lane of its own
    /// key, and a task's lanes share a cutout.
    fn check(params: &[AtcParams], valid: &[bool], tasks: &[Task], width: usize) {
        let mut seen = vec![0; params.len()];
        for t in tasks {
            assert!(t.lanes.len() <= width);
            for &(c, l) in &t.combos {
                seen[c] += 1;
                if valid[c] {
                    assert_eq!(layer_key(&params[c]), layer_key(&params[t.lanes[l]]));
                } else {
                    assert!(t.lanes.is_empty());
                }
            }
            let cutouts: Vec<usize> = t.lanes.iter().map(|&r| params[r].cutout).collect();
            assert!(cutouts.windows(2).all(|w| w[0] == w[1]));
        }
        assert!(seen.iter().all(|&s| s == 1), "{seen:?}");
    }

    #[test]
    fn lanes_are_distinct_keys_of_one_cutout() {
        let mut params = Vec::new();
        for cutout in [0, 20] {
            for lambda in [0.01, 0.02, 0.03] {
                for decay in [0.01, 0.03, 0.05] {
                    for long in [0.1, 0.2] {
                        params.push(p(lambda, decay, cutout, long));
                    }
                }
            }
        }
        let valid = vec![true; params.len()];
        let tasks = plan_tasks(&params, &valid, 8);
        check(&params, &valid, &tasks, 8);
        // 9 keys per cutout: 8 + 1 lanes, twice; thresholds share lanes.
        let lanes: Vec<usize> = tasks.iter().map(|t| t.lanes.len()).collect();
        assert_eq!(lanes, vec![8, 1, 8, 1]);
        assert_eq!(tasks[0].combos.len(), 16);
        // Invalid combinations sit apart, in a task without lanes.
        let mut valid = vec![true; params.len()];
        valid[3] = false;
        valid[5] = false;
        let tasks = plan_tasks(&params, &valid, 8);
        check(&params, &valid, &tasks, 8);
        assert_eq!(tasks.iter().filter(|t| t.lanes.is_empty()).count(), 1);
    }
}
