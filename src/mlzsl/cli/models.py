"""``mlzsl models``: registered models with their parameter counts, or, with ``--checkpoint``,
the model card of one checkpoint (:func:`mlzsl.inference.card.model_card`)."""

from __future__ import annotations

import argparse

from mlzsl.cli import positive_int

NAME = "models"
HELP = "list registered models with parameter counts, or show a checkpoint's model card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl models``."""
    parser.add_argument(
        "--in-channels",
        type=positive_int,
        default=1280,
        help="feature channels C for the counts (default: EfficientNet-Lite0's)",
    )
    parser.add_argument(
        "--embed-dim",
        type=positive_int,
        default=50,
        help="label-vector size E for the counts (default: GloVe-50)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="show the model card of this checkpoint (.pt) or ready model (photo, demo)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    """Print the registry, or one checkpoint's card."""
    if args.checkpoint is not None:
        return _card(args)
    from mlzsl.cli._common import format_table, print_json
    from mlzsl.models import count_parameters, create_model, list_models

    counts = {
        name: count_parameters(
            create_model(name, in_channels=args.in_channels, embed_dim=args.embed_dim)
        )
        for name in list_models(inputs="features")
    }
    # image-input models run their own backbone: counted on RGB images, trunk included
    counts |= {
        name: count_parameters(create_model(name, in_channels=3, embed_dim=args.embed_dim))
        for name in list_models(inputs="images")
    }
    if args.json:
        print_json({"in_channels": args.in_channels, "embed_dim": args.embed_dim, "models": counts})
    else:
        print(format_table(["model", "parameters"], [[n, f"{c:,}"] for n, c in counts.items()]))
        print(
            f"(feature-map models counted at C={args.in_channels}, E={args.embed_dim}; "
            "image models with their backbone)"
        )
    return 0


def _card(args: argparse.Namespace) -> int:
    from mlzsl.cli._common import print_json
    from mlzsl.inference.card import card_text, model_card
    from mlzsl.inference.checkpoint import load_checkpoint
    from mlzsl.inference.tagger import NAMED_CHECKPOINTS, resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    name = args.checkpoint if args.checkpoint in NAMED_CHECKPOINTS else path.name
    card = model_card(load_checkpoint(path), path=path, name=name)
    if args.json:
        print_json(card)
    else:
        print(card_text(card))
    return 0
