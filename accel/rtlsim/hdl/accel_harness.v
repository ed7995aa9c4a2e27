// Simulation harness for accel_gemm_core: memories loaded in bulk, a clock of its own,
// one handshake with the testbench per job (start -> done; `running` marks the run
// itself, between loading and read-back). No testbench work per cycle.
//
// Per job the testbench writes, in the simulator's working directory:
//   job_head.hex     n_control, n_data, n_out, n_tiles, layer word (32-bit hex words)
//   job_control.hex  control beats: {kind (1 = tile, 0 = LUT), payload}
//   job_data.hex     data beats: {first beat of a tile, payload}
// raises `start`, waits for `done`, and reads back
//   job_out.hex      output beats (out__payload), in arrival order
//   job_cycles.hex   per tile: cycle of its first data beat, cycle of its last output beat
//   job_stat.hex     total cycles of the job
// Cycle 0 is the first clock cycle after reset; the feeders present beats from cycle 0 on
// with no bubble (a new beat the cycle after a handshake).
`timescale 1ns/1ps
`include "accel_harness_params.vh"

module accel_harness (
  input  wire start   /* verilator public_flat_rw */,
  output reg  running /* verilator public_flat_rw */,
  output reg  done    /* verilator public_flat_rw */
);
  reg clk = 1'b0;
`ifdef ACCEL_WAVES
  always #5 clk = ~clk;
`else
  // Both edges in one time step (the falling edge, then the rising edge as a nonblocking
  // update): one simulation time step per clock cycle instead of two, which halves the
  // simulator's and cocotb's work per step. The design uses rising edges only; waveform
  // builds (ACCEL_WAVES) use the ordinary clock so that traces show both edges.
  always #10 begin
    clk = 1'b0;
    clk <= 1'b1;
  end
`endif

  // Reset rises at 1 ns (before the first clock edge at 10 ns) rather than holding 1 from its
  // declaration: the rising edge is an event, so every block that computes a register's reset
  // value runs before the first edge, under SystemVerilog rules too (where an initializer is no event).
`ifdef ACCEL_WAVES
`ifdef __ICARUS__
  // Icarus waveforms, dumped here rather than by cocotb's dump module, which declares a
  // SystemVerilog `string` and so cannot build under the Verilog-2005 rules used here.
  reg [8*1024-1:0] dumpfile_path;
  initial begin
    if ($value$plusargs("dumpfile_path=%s", dumpfile_path))
      $dumpfile(dumpfile_path);
    else
      $dumpfile("accel_harness.fst");
    $dumpvars(0, accel_harness);
  end
`endif
`endif

  reg rst = 1'b0;
  initial #1 rst = 1'b1;
  initial running = 1'b0;

  reg [31:0]          head     [0:7];
  reg [`CTRL_W-1:0]   ctrl_mem [0:`CTRL_DEPTH-1];
  reg [`DATA_W-1:0]   data_mem [0:`DATA_DEPTH-1];
  reg [`OUT_W-1:0]    out_mem  [0:`OUT_DEPTH-1];
  reg [31:0]          cyc_mem  [0:2*`TILE_DEPTH-1];
  reg [31:0]          stat_mem [0:0];

  reg [31:0] n_ctrl = 0, n_data = 0, n_out = 0, n_tiles = 0;
  reg [31:0] layer_word = 0;
  reg [31:0] ci = 0, di = 0, oi = 0, ti_in = 0, ti_out = 0, cycle = 0, row_count = 0;

  // Payloads are 0 while not valid: the memories hold X past the loaded words, and the core
  // registers its input beats every cycle (an X there is harmless but shows in waveforms).
  wire ctrl_avail = running && (ci < n_ctrl);
  wire data_valid = running && (di < n_data);
  wire [`CTRL_W-1:0] cw = ctrl_avail ? ctrl_mem[ci[`CTRL_AW-1:0]] : {`CTRL_W{1'b0}};
  wire [`DATA_W-1:0] dw = data_valid ? data_mem[di[`DATA_AW-1:0]] : {`DATA_W{1'b0}};
  wire lut_valid  = ctrl_avail && !cw[`CTRL_W-1];
  wire tile_valid = ctrl_avail &&  cw[`CTRL_W-1];
  wire lut_ready, tile_ready, data_ready, out_valid, busy;
  wire [`OUT_W-1:0] out_payload;

  accel_gemm_core core (
    .clk(clk), .rst(rst),
    .lut__valid(lut_valid), .lut__ready(lut_ready), .lut__payload(cw[`LUT_W-1:0]),
    .tile__valid(tile_valid), .tile__ready(tile_ready), .tile__payload(cw[`TILE_W-1:0]),
    .data__valid(data_valid), .data__ready(data_ready), .data__payload(dw[`BEAT_W-1:0]),
    .out__valid(out_valid), .out__payload(out_payload),
    .layer(layer_word[`LAYER_W-1:0]), .busy(busy)
  );

  always @(posedge clk) begin
    if (rst || !running) begin
      ci <= 0; di <= 0; oi <= 0; ti_in <= 0; ti_out <= 0; cycle <= 0; row_count <= 0;
    end else begin
      cycle <= cycle + 1;
      if ((lut_valid && lut_ready) || (tile_valid && tile_ready))
        ci <= ci + 1;
      if (data_valid && data_ready) begin
        di <= di + 1;
        if (dw[`DATA_W-1]) begin
          cyc_mem[2 * ti_in] <= cycle;
          ti_in <= ti_in + 1;
        end
      end
      if (out_valid) begin
        out_mem[oi[`OUT_AW-1:0]] <= out_payload;
        oi <= oi + 1;
        if (row_count == `ROWS - 1) begin
          row_count <= 0;
          cyc_mem[2 * ti_out + 1] <= cycle;
          ti_out <= ti_out + 1;
        end else begin
          row_count <= row_count + 1;
        end
      end
    end
  end

  initial begin
    done = 1'b0;
    forever begin
      @(posedge start);
      $readmemh("job_head.hex", head);
      $readmemh("job_control.hex", ctrl_mem);
      $readmemh("job_data.hex", data_mem);
      @(negedge clk);
      rst = 1'b1;
      running = 1'b0;
      n_ctrl = head[0];
      n_data = head[1];
      n_out = head[2];
      n_tiles = head[3];
      layer_word = head[4];
      // Reset for 8 cycles: the longest path of data registers without reset (the PEs' product
      // registers and the accumulator's input) fills with defined values before the run starts.
      repeat (8) @(negedge clk);
      rst = 1'b0;
      running = 1'b1;
      wait (oi == n_out);
      @(negedge clk);
      running = 1'b0;
      stat_mem[0] = cycle;
      $writememh("job_out.hex", out_mem, 0, n_out - 1);
      $writememh("job_cycles.hex", cyc_mem, 0, 2 * n_tiles - 1);
      $writememh("job_stat.hex", stat_mem);
      done = 1'b1;
      @(negedge start);
      done = 1'b0;
    end
  end
endmodule
