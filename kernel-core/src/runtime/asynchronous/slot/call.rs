//! A call's future and its wait in the slot's queue; the task that finishes a call whose
//! caller went away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{AsyncSlot, Lot};
use crate::runtime::asynchronous::gate::Ticket;
use crate::runtime::caller::fresh_token;
use crate::runtime::error::CallError;
use crate::runtime::error::Status;
use crate::runtime::slot::Blocked;
use crate::runtime::wait::{self, Held, Waiting};

/// A wait in a slot's queue, in arrival order, at most until its deadline; leaves the queue
/// (passing on the slot if it was granted meanwhile) when dropped.
pub(super) struct Queued<Req: Send + 'static, Resp: Send + 'static> {
    pub(super) slot: Arc<AsyncSlot<Req, Resp>>,
    pub(super) ticket: Option<Ticket>,
    pub(super) timeout: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    /// The wait, registered for cycle detection (not for a top-level caller, which holds
    /// nothing and so cannot close a cycle).
    pub(super) _registered: Option<Waiting>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Queued<Req, Resp> {
    /// Queues chain `me` (registered in the wait table first unless `unheld`: refused if
    /// waiting would close a cycle).
    pub(super) fn new(
        slot: &Arc<AsyncSlot<Req, Resp>>,
        me: u64,
        unheld: bool,
        timeout: Option<Duration>,
        cx: &mut Context<'_>,
    ) -> Result<Self, Blocked> {
        let registered = match unheld {
            true => None,
            false => Some(wait::begin(me, Arc::clone(slot) as Arc<dyn Held>).map_err(Blocked::Cycle)?),
        };
        Ok(Self {
            ticket: Some(slot.gate.enqueue(me, cx.waker())),
            slot: Arc::clone(slot),
            timeout: timeout.map(|bound| (bound, Box::pin(tokio::time::sleep(bound)))),
            _registered: registered,
        })
    }

    pub(super) fn poll_lot(&mut self, cx: &mut Context<'_>) -> Poll<Result<Box<Lot<Req, Resp>>, Blocked>> {
        let Some(ticket) = &self.ticket else {
            unreachable!("a wait is not polled after it ended")
        };
        if let Some(lot) = self.slot.gate.poll_ticket(ticket, cx) {
            self.ticket = None;
            return Poll::Ready(Ok(lot));
        }
        if let Some((bound, sleep)) = &mut self.timeout
            && sleep.as_mut().poll(cx).is_ready()
        {
            let bound = *bound;
            if let Some(ticket) = self.ticket.take() {
                self.slot.gate.cancel(ticket);
            }
            return Poll::Ready(Err(Blocked::TimedOut(bound)));
        }
        Poll::Pending
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for Queued<Req, Resp> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.slot.gate.cancel(ticket);
        }
    }
}

/// The future of a call to an async service ([`AsyncSlot::call`]).
pub(crate) struct Call<Req: Send + 'static, Resp: Send + 'static> {
    pub(super) slot: Arc<AsyncSlot<Req, Resp>>,
    pub(super) step: Step<Req, Resp>,
}

pub(super) enum Step<Req: Send + 'static, Resp: Send + 'static> {
    /// Not polled yet.
    Enter {
        request: Req,
        timeout: Option<Duration>,
    },
    /// Waiting for the slot, the request not delivered.
    Queued {
        request: Req,
        chain: u64,
        queued: Queued<Req, Resp>,
    },
    /// The handler returned `Pending`: its work, in the lot, goes on.
    Serving {
        lot: Box<Lot<Req, Resp>>,
        chain: u64,
    },
    Done,
}

// The future is never pinned structurally: the handler's work is in the instance's own storage.
impl<Req: Send + 'static, Resp: Send + 'static> Unpin for Call<Req, Resp> {}

impl<Req: Send + 'static, Resp: Send + 'static> Future for Call<Req, Resp> {
    type Output = Result<Resp, CallError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &mut this.step {
            Step::Enter { .. } => {
                let (chain, unheld) = match crate::runtime::caller::joined() {
                    Some(chain) => (chain, false),
                    None => (fresh_token(), true),
                };
                if let Some(lot) = this.slot.gate.try_take(chain) {
                    let Step::Enter { request, .. } = std::mem::replace(&mut this.step, Step::Done) else {
                        unreachable!()
                    };
                    return this.serve(lot, request, chain, cx);
                }
                this.enter_contended(chain, unheld, cx)
            }
            Step::Queued { queued, chain, .. } => {
                let chain = *chain;
                match queued.poll_lot(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(blocked)) => {
                        this.step = Step::Done;
                        Poll::Ready(Err(blocked.into_call_error(this.slot.name())))
                    }
                    Poll::Ready(Ok(lot)) => {
                        let Step::Queued { request, .. } = std::mem::replace(&mut this.step, Step::Done) else {
                            unreachable!()
                        };
                        this.serve(lot, request, chain, cx)
                    }
                }
            }
            Step::Serving { lot, chain } => {
                let Some(instance) = lot.instance.as_deref_mut() else {
                    unreachable!("a lot being served has its instance")
                };
                let served = std::task::ready!(instance.resume(*chain, cx));
                let Step::Serving { lot, .. } = std::mem::replace(&mut this.step, Step::Done) else {
                    unreachable!()
                };
                Poll::Ready(this.slot.settle(lot, served))
            }
            Step::Done => panic!("a call's future polled after it completed"),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Call<Req, Resp> {
    /// The slot was busy (or others wait): refuse a loop, else queue.
    #[cold]
    #[inline(never)]
    fn enter_contended(&mut self, chain: u64, unheld: bool, cx: &mut Context<'_>) -> Poll<Result<Resp, CallError>> {
        if !unheld && self.slot.gate.owner() == chain {
            self.step = Step::Done;
            return Poll::Ready(Err(Blocked::Reentry.into_call_error(self.slot.name())));
        }
        let Step::Enter { request, timeout } = std::mem::replace(&mut self.step, Step::Done) else {
            unreachable!()
        };
        match Queued::new(&self.slot, chain, unheld, timeout, cx) {
            Ok(queued) => {
                self.step = Step::Queued { request, chain, queued };
                // Polled at once: the slot may have been granted while queueing.
                Pin::new(self).poll(cx)
            }
            Err(blocked) => Poll::Ready(Err(blocked.into_call_error(self.slot.name()))),
        }
    }

    /// The slot is held: serve the request, polling the handler once here.
    #[inline]
    fn serve(
        &mut self,
        mut lot: Box<Lot<Req, Resp>>,
        request: Req,
        chain: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Resp, CallError>> {
        let status = self.slot.status();
        let instance = match lot.instance.as_deref_mut() {
            Some(instance) if status == Status::Running => instance,
            Some(_) => return Poll::Ready(Err(self.slot.refuse(lot, status))),
            None => return Poll::Ready(Err(self.slot.refuse(lot, Status::Failed))),
        };
        match instance.serve(request, chain, cx) {
            Poll::Ready(served) => Poll::Ready(self.slot.settle(lot, served)),
            Poll::Pending => {
                self.step = Step::Serving { lot, chain };
                Poll::Pending
            }
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for Call<Req, Resp> {
    fn drop(&mut self) {
        if let Step::Serving { .. } = self.step {
            let Step::Serving { lot, chain } = std::mem::replace(&mut self.step, Step::Done) else {
                unreachable!()
            };
            // The caller went away mid-handler: the work, which owns the instance, is finished
            // on the runtime, and the slot released then.
            let finish = Finish {
                slot: Arc::clone(&self.slot),
                lot: Some(lot),
                chain,
            };
            drop(self.slot.runtime.spawn(finish));
        }
    }
}

/// The rest of a call whose caller went away.
pub(super) struct Finish<Req: Send + 'static, Resp: Send + 'static> {
    pub(super) slot: Arc<AsyncSlot<Req, Resp>>,
    pub(super) lot: Option<Box<Lot<Req, Resp>>>,
    pub(super) chain: u64,
}

impl<Req: Send + 'static, Resp: Send + 'static> Unpin for Finish<Req, Resp> {}

impl<Req: Send + 'static, Resp: Send + 'static> Future for Finish<Req, Resp> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(instance) = this.lot.as_deref_mut().and_then(|lot| lot.instance.as_deref_mut()) else {
            return Poll::Ready(());
        };
        let served = std::task::ready!(instance.resume(this.chain, cx));
        if let Some(lot) = this.lot.take() {
            let _ = this.slot.settle(lot, served);
        }
        Poll::Ready(())
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for Finish<Req, Resp> {
    fn drop(&mut self) {
        // Dropped unfinished (the runtime is shutting down): the work and the instance it owns
        // are gone; the slot is released without it.
        if let Some(mut lot) = self.lot.take() {
            lot.instance = None;
            self.slot.gate.release(lot);
        }
    }
}
