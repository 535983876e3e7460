//! Order-keeping parallel map over a slice, for decoding: the image files of a source at load
//! time and those of a batch when streaming. Scoped threads rather than a pool crate: the work
//! items are few and large (one file each), so spawn cost is noise.

/// `f` applied to every item on up to all cores, results in the order of `items`. Items are
/// split into one contiguous share per thread, so the result never depends on the thread count.
///
/// A worker that panics costs only its share: each of its items gets `on_panic()` (the
/// decoders are meant never to panic, but they run on arbitrary files).
pub(crate) fn parallel_map<T, R>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
    on_panic: impl Fn() -> R,
) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let share = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(share)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .zip(items.chunks(share))
            .flat_map(|(h, part)| match h.join() {
                Ok(results) => results,
                Err(_) => part.iter().map(|_| on_panic()).collect(),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_survives_a_panicking_share() {
        let items: Vec<usize> = (0..37).collect();
        assert_eq!(
            parallel_map(&items, |&i| i * 2, || 0),
            (0..37).map(|i| i * 2).collect::<Vec<_>>()
        );
        let out = parallel_map(
            &items,
            |&i| {
                assert!(i != 5, "worker failure under test");
                Some(i)
            },
            || None,
        );
        assert_eq!(out.len(), 37);
        assert_eq!(out[36], Some(36));
        assert_eq!(out[5], None);
    }
}
