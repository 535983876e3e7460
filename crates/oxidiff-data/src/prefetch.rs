//! Batches prepared ahead of the trainer on a background thread, for streamed datasets.
//!
//! Why ahead of time and not on demand: decoding a batch of files takes real time (a JPEG
//! photo is milliseconds), and done inline it would add to every step. The training order is a
//! pure function of the step ([`crate::EpochOrder`]) and so is each image's augmentation seed,
//! so the next batches are known in advance and can be decoded while the model computes; in
//! steady state the trainer only takes a finished batch off a queue.
//!
//! Batches are identified by the caller's id (the step) and delivered in request order; the
//! result of a batch does not depend on when it was prepared, so a prefetching run trains on
//! exactly the batches a synchronous one would.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use crate::{Augment, Batch, DataError, Dataset};

/// One batch to prepare: the images at `indices`, image `k` augmented with `seeds[k]`.
struct Request {
    id: u64,
    indices: Vec<usize>,
    seeds: Vec<Option<u64>>,
}

/// A background thread assembling requested batches of one dataset, in request order.
pub struct Prefetcher {
    requests: Option<Sender<Request>>,
    results: Receiver<(u64, Result<Batch, DataError>)>,
    worker: Option<JoinHandle<()>>,
    /// Ids requested and not yet received, oldest first.
    pending: std::collections::VecDeque<u64>,
}

impl Prefetcher {
    /// Starts the thread; it decodes each batch with [`Dataset::assemble`] (all cores) and
    /// waits for the next request when none is queued.
    pub fn new(dataset: Arc<Dataset>, augment: Augment) -> Self {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, results) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("oxidiff-prefetch".into())
            .spawn(move || {
                for request in inbox {
                    let batch = dataset.assemble(&request.indices, augment, |k| request.seeds[k]);
                    if outbox.send((request.id, batch)).is_err() {
                        break;
                    }
                }
            })
            .ok();
        Self {
            requests: Some(requests),
            results,
            worker,
            pending: Default::default(),
        }
    }

    /// Ids requested and not yet received.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queues batch `id`: the images at `indices`, image `k` augmented with `seeds[k]`.
    ///
    /// # Shapes
    /// - `indices`, `seeds`: `[B]`
    pub fn request(&mut self, id: u64, indices: Vec<usize>, seeds: Vec<Option<u64>>) {
        debug_assert_eq!(indices.len(), seeds.len());
        self.pending.push_back(id);
        if let Some(tx) = &self.requests {
            // A send fails only if the worker is gone; `receive` then reports it.
            let _ = tx.send(Request { id, indices, seeds });
        }
    }

    /// Waits for the oldest requested batch, which must be `id`.
    ///
    /// # Errors
    /// Whatever [`Dataset::assemble`] reported for it, or [`DataError::InvalidArgument`] when
    /// `id` is not the oldest request or the worker thread is gone.
    pub fn receive(&mut self, id: u64) -> Result<Batch, DataError> {
        let gone = || DataError::InvalidArgument {
            what: "prefetch thread".into(),
            message: "stopped unexpectedly".into(),
        };
        match self.pending.front() {
            Some(&front) if front == id => {}
            other => {
                return Err(DataError::InvalidArgument {
                    what: "prefetch".into(),
                    message: format!("batch {id} was not requested next (next: {other:?})"),
                });
            }
        }
        self.pending.pop_front();
        let (got, batch) = self.results.recv().map_err(|_| gone())?;
        debug_assert_eq!(got, id, "the worker answers in request order");
        batch
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Closing the request channel ends the worker's loop once its current batch is done.
        self.requests = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
