import Foundation
import TMFImage

/// Training curves from a model folder's `metrics.jsonl`, drawn as one RGB picture
/// (`training.png`): a grid of panels, one per figure that has data, in pipeline order —
/// pretraining loss; MBHT loss and valid HitRate@1 per epoch; LLM loss per task level with a
/// smoothed line, its learning rate, and its validation HitRate@1(all) and ValidRatio.
///
/// When a stage's steps (or epochs) start again from a lower number — the folder was trained
/// again without `resume` — only that stage's last run is drawn. Rendering is deterministic: the
/// same records give the same pixels.
///
/// ```swift
/// let png = try TrainingPlot.write(modelFolder: folder)   // folder/training.png
/// ```
public struct TrainingPlot: Sendable {
    /// The picture's file name in a model folder.
    public static let fileName = "training.png"

    /// How a series is drawn.
    public enum Style: Sendable, Equatable {
        /// A square dot per point (noisy per-step values).
        case dots
        /// A line through the points.
        case line
        /// A line with a square marker on every point (sparse values: epochs, validations).
        case lineWithMarkers
    }

    /// One curve of a panel.
    public struct Series: Sendable, Equatable {
        public var name: String
        public var color: PlotColor
        public var style: Style
        /// Step or epoch of each point, increasing.
        public var x: [Double]
        public var y: [Double]
    }

    /// One chart.
    public struct Panel: Sendable, Equatable {
        public var title: String
        /// `step` or `epoch`.
        public var xLabel: String
        public var series: [Series]
        /// A fixed value range (rates: 0...1); nil fits the data.
        public var yRange: ClosedRange<Double>?
        /// Whether a fitted range starts at 0 (learning rates).
        public var yFromZero: Bool
    }

    /// The panels with data, in drawing order (left to right, top to bottom).
    public let panels: [Panel]

    /// Panels from records as `MetricsLog.read()` returns them (file order).
    public init(records: [MetricsRecord]) {
        var panels: [Panel] = []
        let pretrain = Self.lastRun(records.filter { $0.stage == .pretrain }, position: "step")
        let graph = Self.lastRun(records.filter { $0.stage == .graph }, position: "epoch")
        let llm = Self.lastRun(records.filter { $0.stage == .llm }, position: "step")

        // Pretraining: train loss per step, smoothed, and the held-out loss.
        let pretrainSteps = pretrain.filter(\.isTraining)
        let heldOut = pretrain.filter { $0.kind == "validation" }
        var pretrainSeries = [Self.series("train", Palette.pretrain, .dots, pretrainSteps, "step", "loss")]
        pretrainSeries.append(Self.smoothed(pretrainSeries[0]))
        pretrainSeries.append(Self.series("held-out", Palette.heldOut, .lineWithMarkers, heldOut, "step", "loss"))
        panels.append(Panel(title: "Pretraining loss", xLabel: "step", series: pretrainSeries, yRange: nil, yFromZero: false))

        // MBHT: loss and valid HitRate@1 per epoch.
        let epochs = graph.filter(\.isTraining)
        panels.append(Panel(title: "MBHT loss", xLabel: "epoch",
                            series: [Self.series("loss", Palette.graphLoss, .lineWithMarkers, epochs, "epoch", "loss")],
                            yRange: nil, yFromZero: false))
        panels.append(Panel(title: "MBHT valid HitRate@1", xLabel: "epoch",
                            series: [Self.series("HitRate@1", Palette.graphHitRate, .lineWithMarkers, epochs, "epoch", "HitRate@1")],
                            yRange: Self.rateRange, yFromZero: false))

        // LLM: loss per task level and smoothed, learning rate, validation.
        let steps = llm.filter(\.isTraining)
        var lossSeries: [Series] = []
        for (level, color) in [("easy", Palette.easy), ("medium", Palette.medium), ("hard", Palette.hard)] {
            lossSeries.append(Self.series(level, color, .dots, steps.filter { $0.strings["level"] == level }, "step", "loss"))
        }
        let known: Set<String> = ["easy", "medium", "hard"]
        lossSeries.append(Self.series("other", Palette.otherLevel, .dots,
                                      steps.filter { !known.contains($0.strings["level"] ?? "") }, "step", "loss"))
        lossSeries.append(Self.smoothed(Self.series("all", Palette.smoothed, .dots, steps, "step", "loss")))
        panels.append(Panel(title: "LLM loss", xLabel: "step", series: lossSeries, yRange: nil, yFromZero: false))
        panels.append(Panel(title: "LLM learning rate", xLabel: "step",
                            series: [Self.series("lr", Palette.learningRate, .line, steps, "step", "lr")],
                            yRange: nil, yFromZero: true))
        let validations = llm.filter { $0.kind == "validation" }
        panels.append(Panel(title: "LLM validation", xLabel: "step", series: [
            Self.series("HitRate@1(all)", Palette.hitRateAll, .lineWithMarkers, validations, "step", "HitRate@1(all)"),
            Self.series("ValidRatio", Palette.validRatio, .lineWithMarkers, validations, "step", "ValidRatio"),
        ], yRange: Self.rateRange, yFromZero: false))

        self.panels = panels.compactMap { panel in
            var p = panel
            p.series = p.series.filter { !$0.x.isEmpty }
            return p.series.isEmpty ? nil : p
        }
    }

    /// Panels from a `metrics.jsonl` file.
    /// - Throws: `MetricsError` (missing file, a malformed line, no records).
    public init(metricsFile url: URL) throws {
        self.init(records: try MetricsLog(url: url).read())
    }

    /// Draws `modelFolder/metrics.jsonl` into `modelFolder/training.png` (written atomically).
    /// - Parameters:
    ///   - width, height: the picture's size in pixels (at least 320 × 240).
    /// - Returns: the picture's URL.
    /// - Throws: `MetricsError` (no folder, no metrics file, a malformed line, no records; then
    ///   nothing is written), `ImageError.unwritable`.
    @discardableResult
    public static func write(modelFolder: URL, width: Int = 1000, height: Int = 700) throws -> URL {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: modelFolder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw MetricsError.noModelFolder(path: modelFolder.path)
        }
        let plot = try TrainingPlot(metricsFile: MetricsLog(folder: modelFolder).url)
        let url = modelFolder.appendingPathComponent(fileName)
        try plot.render(width: width, height: height).writePNG(to: url)
        return url
    }

    /// The picture: white background, each panel with its title, legend, ticks and curves.
    public func render(width: Int = 1000, height: Int = 700) -> RGBImage {
        precondition(width >= 320 && height >= 240, "the plot needs at least 320 x 240 pixels")
        var canvas = Canvas(width: width, height: height)
        for (panel, cell) in zip(panels, cells(width: width, height: height)) {
            draw(panel, in: cell, on: &canvas)
        }
        return canvas.image
    }

    /// Where each panel's curves are drawn (the framed area), in `panels` order.
    public func plotAreas(width: Int = 1000, height: Int = 700) -> [PixelRect] {
        zip(panels, cells(width: width, height: height)).map { layout($0, in: $1).area }
    }

    // MARK: - Data

    static let rateRange: ClosedRange<Double> = 0...1

    /// Colours of the series (the tableau palette, one per series across the picture).
    enum Palette {
        static let easy = PlotColor(44, 160, 44)
        static let medium = PlotColor(255, 127, 14)
        static let hard = PlotColor(214, 39, 40)
        static let otherLevel = PlotColor(127, 127, 127)
        static let smoothed = PlotColor(40, 40, 40)
        static let learningRate = PlotColor(31, 119, 180)
        static let hitRateAll = PlotColor(148, 103, 189)
        static let validRatio = PlotColor(23, 190, 207)
        static let graphLoss = PlotColor(140, 86, 75)
        static let graphHitRate = PlotColor(227, 119, 194)
        static let pretrain = PlotColor(188, 189, 34)
        static let heldOut = PlotColor(57, 59, 121)
        static let text = PlotColor(0, 0, 0)
        static let frame = PlotColor(150, 150, 150)
        static let grid = PlotColor(228, 228, 228)
    }

    /// The records from the last place where the training records' `position` (step or epoch)
    /// stopped increasing: the stage's latest run.
    static func lastRun(_ records: [MetricsRecord], position: String) -> [MetricsRecord] {
        var start = 0, last = -Double.infinity
        for (i, r) in records.enumerated() where r.isTraining {
            let x = r.numbers[position] ?? 0
            if x <= last { start = i }
            last = x
        }
        return Array(records[start...])
    }

    /// The points of `records` that have `xKey` and `yKey` values (within ±1e15: no training
    /// figure is larger, and the axes stay computable).
    static func series(_ name: String, _ color: PlotColor, _ style: Style, _ records: [MetricsRecord], _ xKey: String,
                       _ yKey: String) -> Series {
        var x: [Double] = [], y: [Double] = []
        for r in records {
            guard let px = r.numbers[xKey], let py = r.numbers[yKey], abs(px) < 1e15, abs(py) < 1e15 else { continue }
            x.append(px)
            y.append(py)
        }
        return Series(name: name, color: color, style: style, x: x, y: y)
    }

    /// A bias-corrected exponential moving average of `s` (span: a thirtieth of its points), as
    /// a dark line named "smoothed"; empty below 60 points, where it would be the points themselves.
    static func smoothed(_ s: Series) -> Series {
        let span = s.y.count / 30
        guard span >= 2 else { return Series(name: "smoothed", color: Palette.smoothed, style: .line, x: [], y: []) }
        let alpha = 2 / Double(span + 1)
        var average = 0.0, weight = 0.0
        let y = s.y.map { v -> Double in
            average = (1 - alpha) * average + alpha * v
            weight = (1 - alpha) * weight + alpha
            return average / weight
        }
        return Series(name: "smoothed", color: Palette.smoothed, style: .line, x: s.x, y: y)
    }

    // MARK: - Layout

    /// The grid cells: one column for one panel, two for up to four, else three.
    func cells(width: Int, height: Int) -> [PixelRect] {
        let n = panels.count
        guard n > 0 else { return [] }
        let columns = n == 1 ? 1 : n <= 4 ? 2 : 3
        let rows = (n + columns - 1) / columns
        let margin = 6
        let w = (width - 2 * margin) / columns, h = (height - 2 * margin) / rows
        return (0..<n).map { i in PixelRect(x: margin + (i % columns) * w, y: margin + (i / columns) * h, width: w, height: h) }
    }

    static let titleScale = 2, textScale = 1

    /// A panel's axes: value ranges, ticks and the framed area they map to.
    struct Layout {
        var area: PixelRect
        var x: ClosedRange<Double>, y: ClosedRange<Double>
        var xTicks: [Double], yTicks: [Double]
        var xLabels: [String], yLabels: [String]
        /// Pixels kept free inside the frame at the left and right, so end markers show whole.
        static let inset = 4

        func px(_ v: Double) -> Int {
            let width = Double(area.width - 1 - 2 * Self.inset)
            return area.x + Self.inset + Self.pixels(v, in: x, span: width)
        }

        func py(_ v: Double) -> Int {
            area.y + area.height - 1 - Self.pixels(v, in: y, span: Double(area.height - 1))
        }

        /// Where `v` falls on `span` pixels, clamped to a span either side (values outside a
        /// fixed range are clipped when drawn).
        static func pixels(_ v: Double, in range: ClosedRange<Double>, span: Double) -> Int {
            let f = (v - range.lowerBound) / (range.upperBound - range.lowerBound)
            return Int((min(max(f, -1), 2) * span).rounded())
        }
    }

    func layout(_ panel: Panel, in cell: PixelRect) -> Layout {
        let xs = panel.series.flatMap(\.x), ys = panel.series.flatMap(\.y)
        let xHigh = max(xs.max() ?? 1, 1)
        let xLow = min(xs.min() ?? 0, 0)
        let xTicks = Self.ticks(xLow, xHigh, count: 5, whole: true)
        var yLow: Double, yHigh: Double
        if let fixed = panel.yRange {
            let pad = (fixed.upperBound - fixed.lowerBound) * 0.03
            (yLow, yHigh) = (fixed.lowerBound - pad, fixed.upperBound + pad)
        } else {
            (yLow, yHigh) = (ys.min() ?? 0, ys.max() ?? 1)
            if panel.yFromZero { yLow = min(yLow, 0) }
            let span = yHigh - yLow
            let flat = span <= max(abs(yLow), abs(yHigh)) * 1e-9
            let pad = flat ? max(abs(yHigh) * 0.1, 1e-3) : span * 0.06
            if !(panel.yFromZero && yLow == 0) { yLow -= pad }
            yHigh += pad
        }
        let yTicks = Self.ticks(yLow, yHigh, count: 5, whole: false)
        let yLabels = Self.labels(yTicks.values, step: yTicks.step)
        let labelWidth = yLabels.map { BitmapFont.width(of: $0, scale: Self.textScale) }.max() ?? 0
        let top = cell.y + 48, bottom = cell.y + cell.height - 34
        let left = cell.x + 10 + labelWidth + 8, right = cell.x + cell.width - 16
        return Layout(area: PixelRect(x: left, y: top, width: max(right - left, 2 * Layout.inset + 2), height: max(bottom - top, 2)),
                      x: xLow...xHigh, y: yLow...yHigh, xTicks: xTicks.values, yTicks: yTicks.values,
                      xLabels: Self.labels(xTicks.values, step: xTicks.step), yLabels: yLabels)
    }

    /// About `count` round tick values (1, 2 or 5 × 10^k apart) inside `low...high`.
    static func ticks(_ low: Double, _ high: Double, count: Int, whole: Bool) -> (values: [Double], step: Double) {
        let raw = (high - low) / Double(count)
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let f = raw / magnitude
        var step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * magnitude
        if whole { step = max(step, 1).rounded() }
        let first = (low / step).rounded(.up)
        let last = min((high / step + 1e-9).rounded(.down), first + 50)
        guard first <= last else { return ([], step) }
        let values = (0...Int(last - first)).map { i -> Double in
            let k = first + Double(i)
            return k == 0 ? 0 : k * step
        }
        return (values, step)
    }

    /// Tick labels with as many decimals as the tick step needs (scientific below 1e-4).
    static func labels(_ values: [Double], step: Double) -> [String] {
        let decimals = max(0, Int(-(log10(step) + 1e-9).rounded(.down)))
        if decimals > 4 { return values.map { $0 == 0 ? "0" : String(format: "%.1e", $0) } }
        return values.map { String(format: "%.\(decimals)f", $0) }
    }

    // MARK: - Drawing

    func draw(_ panel: Panel, in cell: PixelRect, on canvas: inout Canvas) {
        let l = layout(panel, in: cell)
        let area = l.area, text = Self.textScale
        canvas.text(panel.title, x: cell.x + 10, y: cell.y + 6, scale: Self.titleScale, color: Palette.text)

        // Grid, frame, ticks and their labels.
        let glyphHeight = BitmapFont.height * text
        for (v, label) in zip(l.yTicks, l.yLabels) {
            let y = l.py(v)
            canvas.fill(PixelRect(x: area.x, y: y, width: area.width, height: 1), Palette.grid)
            canvas.fill(PixelRect(x: area.x - 4, y: y, width: 4, height: 1), Palette.frame)
            canvas.text(label, x: area.x - 7 - BitmapFont.width(of: label, scale: text), y: y - BitmapFont.capHeight * text / 2, scale: text,
                        color: Palette.text)
        }
        for (v, label) in zip(l.xTicks, l.xLabels) {
            let x = l.px(v)
            canvas.fill(PixelRect(x: x, y: area.y, width: 1, height: area.height), Palette.grid)
            canvas.fill(PixelRect(x: x, y: area.y + area.height, width: 1, height: 4), Palette.frame)
            let w = BitmapFont.width(of: label, scale: text)
            canvas.text(label, x: min(max(x - w / 2, cell.x), cell.x + cell.width - w), y: area.y + area.height + 7,
                        scale: text, color: Palette.text)
        }
        canvas.stroke(PixelRect(x: area.x - 1, y: area.y - 1, width: area.width + 2, height: area.height + 2), Palette.frame)
        let xLabelWidth = BitmapFont.width(of: panel.xLabel, scale: text)
        canvas.text(panel.xLabel, x: area.x + area.width - xLabelWidth, y: area.y + area.height + 9 + glyphHeight,
                    scale: text, color: Palette.text)

        // Curves, clipped to the frame.
        for s in panel.series {
            let points = zip(s.x, s.y).map { (l.px($0), l.py($1)) }
            switch s.style {
            case .dots:
                for (x, y) in points { canvas.fill(PixelRect(x: x - 1, y: y - 1, width: 3, height: 3), s.color, clip: area) }
            case .line, .lineWithMarkers:
                for (a, b) in zip(points, points.dropFirst()) { canvas.line(a.0, a.1, b.0, b.1, s.color, thickness: 2, clip: area) }
                if s.style == .lineWithMarkers || points.count == 1 {
                    for (x, y) in points { canvas.fill(PixelRect(x: x - 2, y: y - 2, width: 5, height: 5), s.color, clip: area) }
                }
            }
        }

        // Legend under the title: a swatch and the name of each series.
        var x = area.x
        let y = cell.y + 30
        for s in panel.series {
            switch s.style {
            case .dots: canvas.fill(PixelRect(x: x + 2, y: y + 1, width: 5, height: 5), s.color)
            case .line: canvas.fill(PixelRect(x: x, y: y + 3, width: 10, height: 2), s.color)
            case .lineWithMarkers:
                canvas.fill(PixelRect(x: x, y: y + 3, width: 10, height: 2), s.color)
                canvas.fill(PixelRect(x: x + 3, y: y + 1, width: 5, height: 5), s.color)
            }
            canvas.text(s.name, x: x + 14, y: y, scale: text, color: Palette.text)
            x += 14 + BitmapFont.width(of: s.name, scale: text) + 12
        }
    }
}
