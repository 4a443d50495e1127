//! The autodiff glue of every operation, written once: how an operation with a handwritten
//! backward pass becomes one node of Burn's autodiff graph.
//!
//! An operation describes its backward pass as a [`Gradient`]: what its forward pass keeps
//! (`State`) and how the gradients of its inputs follow from that and the output gradient.
//! [`record`] runs the forward pass on the inner backend, keeping the state only when some
//! input is tracked, and registers the node; the node's backward pass hands each gradient to
//! the input that needs one. So each operation's `Autodiff` implementation (in its file under
//! `ops/`) is its forward call and the state it keeps.

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};

/// The handwritten backward pass of an operation of `N` tensor inputs.
pub(crate) trait Gradient<B: Backend, const N: usize>: Debug + 'static {
    /// What the forward pass keeps for the backward pass.
    type State: Clone + Send + Debug + 'static;

    /// The gradients of the `N` inputs, from the kept `state` and the output gradient `grad`.
    /// `wanted[i]` says whether input `i` needs one: an operation may skip the others (and
    /// return `None` for them); a value returned for an input that needs none is dropped.
    fn backward(
        state: Self::State,
        grad: FloatTensor<B>,
        wanted: [bool; N],
    ) -> [Option<FloatTensor<B>>; N];
}

/// The graph node of the operation whose backward pass is `G`.
struct Node<G>(PhantomData<fn() -> G>);

impl<G> Debug for Node<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node<{}>", std::any::type_name::<G>())
    }
}

impl<B: Backend, G: Gradient<B, N>, const N: usize> Backward<B, N> for Node<G> {
    type State = G::State;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ids = ops.parents.map(|p| p.map(|node| node.id));
        let grad = grads.consume::<B>(&ops.node);
        let values = G::backward(ops.state, grad, ids.map(|id| id.is_some()));
        for (id, value) in ids.into_iter().zip(values) {
            if let (Some(id), Some(value)) = (id, value) {
                grads.register::<B>(id, value);
            }
        }
    }
}

/// Runs an operation on the inner backend and records it as one node of the graph, with the
/// backward pass `G`, for the inputs whose node guards are `inputs` (taken before their
/// primitives are consumed; constants that get no gradient are left out).
///
/// `forward(keep)` computes the output, and, when `keep` is true (some input is tracked), the
/// state the backward pass needs; with `keep` false it keeps nothing, so that inputs it does
/// not clone may be overwritten in place.
pub(crate) fn record<B, C, G, const N: usize>(
    inputs: [NodeGuard; N],
    forward: impl FnOnce(bool) -> (FloatTensor<B>, Option<G::State>),
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    G: Gradient<B, N>,
{
    let node = Node::<G>(PhantomData);
    match node.prepare::<C>(inputs).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, state) = forward(true);
            prep.finish(state.expect("a kept forward pass returns its state"), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(false).0),
    }
}

/// The forward pass of an operation of an input `x`, a weight and a bias with a parameter `P`
/// (a stride, an epsilon, a layout): the shape of the convolutions, the projection and
/// LayerNorm.
pub(crate) type WeightedForward<B, P> =
    fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, P) -> FloatTensor<B>;

/// Its backward pass: `(∂/∂x, ∂/∂weight, ∂/∂bias)` from `x`, the weight, the output gradient
/// and the parameter.
pub(crate) type WeightedBackward<B, P> = fn(
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    P,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

/// The node of a [`record_weighted`] operation: keeps `x`, the weight, the parameter and the
/// backward pass (the bias gradient needs no value of the forward pass).
struct WeightedGradient<P>(PhantomData<fn() -> P>);

impl<P> Debug for WeightedGradient<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WeightedGradient<{}>", std::any::type_name::<P>())
    }
}

impl<B: Backend, P: Clone + Send + Debug + 'static> Gradient<B, 3> for WeightedGradient<P> {
    type State = (FloatTensor<B>, FloatTensor<B>, P, WeightedBackward<B, P>);

    fn backward(
        (x, weight, param, backward): Self::State,
        grad: FloatTensor<B>,
        _: [bool; 3],
    ) -> [Option<FloatTensor<B>>; 3] {
        let (dx, dweight, dbias) = backward(x, weight, grad, param);
        [Some(dx), Some(dweight), Some(dbias)]
    }
}

/// [`record`] for an operation of an input `x`, a weight and a bias with the parameter
/// `param`: `forward` on the inner backend, and `backward` for the graph node (it computes
/// all three gradients; those no input needs are dropped).
pub(crate) fn record_weighted<B, C, P>(
    [x, weight, bias]: [FloatTensor<Autodiff<B, C>>; 3],
    param: P,
    forward: WeightedForward<B, P>,
    backward: WeightedBackward<B, P>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    P: Clone + Send + Debug + 'static,
{
    let inputs = [x.node(), weight.node(), bias.node()];
    record::<B, C, WeightedGradient<P>, 3>(inputs, |keep| {
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        let kept = keep.then(|| (x.clone(), weight.clone(), param.clone(), backward));
        (forward(x, weight, bias.into_primitive(), param), kept)
    })
}
