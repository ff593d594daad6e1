//! The threads that file the lines of bulk imports, apart from the request threads: an import
//! keeps many lines in flight so that the group-commit writer sees them together, and on the
//! request threads it would fill the pool of the worker it landed on and keep that worker's
//! interactive requests waiting. Imports share these threads; a line waits for a free one.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

pub struct ImportPool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

impl ImportPool {
    /// Starts `threads` threads; they end when the pool is dropped.
    pub fn start(threads: usize) -> ImportPool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = threads.max(1);
        for n in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("import-{n}")).spawn(move || loop {
                // The lock is held only to take a job, not to run it.
                let job = match queue.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
            if let Err(error) = spawned {
                tracing::warn!(%error, "an import thread could not start");
            }
        }
        ImportPool { jobs, threads }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `work` on a thread of the pool; its result arrives on the receiver (which is closed
    /// unanswered only if the work panicked or the pool is gone).
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> oneshot::Receiver<T> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(work());
        });
        // Sent to a pool whose threads are gone, the job is dropped and the receiver closed.
        let _ = self.jobs.send(job);
        answered
    }
}
